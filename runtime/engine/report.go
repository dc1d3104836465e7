package engine

// StageReport is a stage's timing in the JSON form that `modelrt run --output json` and the
// daemon's /v1/pipelines/NAME:run both return.
type StageReport struct {
	Stage            string  `json:"stage"`
	Use              string  `json:"use"`
	StartMS          float64 `json:"start_ms"`
	DurationMS       float64 `json:"duration_ms"`
	PromptTokens     int     `json:"prompt_tokens,omitempty"`
	GeneratedTokens  int     `json:"generated_tokens,omitempty"`
	DecodeTokensPerS float64 `json:"decode_tokens_per_s,omitempty"`
	FinishReason     string  `json:"finish_reason,omitempty"`
}

// Report returns s as a StageReport.
func (s StageTiming) Report() StageReport {
	r := StageReport{Stage: s.Stage, Use: s.Use, StartMS: float64(s.Start) / 1e6, DurationMS: float64(s.Duration) / 1e6}
	if g := s.Generate; g != nil {
		r.PromptTokens, r.GeneratedTokens, r.DecodeTokensPerS, r.FinishReason = g.PromptTokens, g.GeneratedTokens, g.DecodeTokensPerS, g.FinishReason
	}
	return r
}
