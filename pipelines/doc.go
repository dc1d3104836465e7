// Package pipelines is the HCL pipeline language of modelrt: the schema of
// variable, locals, backend, model and pipeline blocks (with their input,
// stage and output blocks), the function set of expressions, the stage
// catalogue, references between blocks, the DAG of stages, and diagnostics
// with file:line:col.
//
// Load parses and checks a configuration without running anything: every
// stage expression is evaluated once with unknown values of the declared
// types, so that type errors surface before a run. Stage attributes are
// evaluated for real by EvalStage, which an engine calls once a stage's
// dependencies (Stage.DependsOn) have produced their outputs. See
// docs/pipelines.md for the language reference.
package pipelines
