package conformance

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// maxReason cuts long n/a reasons in the table; --json has them whole.
const maxReason = 200

// WriteTable prints one line per (case, backend) — result, max abs and rel error against the
// expected values, time — then the details of every failed check, the reason of every n/a row
// and of every n/a check.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tBACKEND\tRESULT\tMAX ABS ERR\tMAX REL ERR\tTIME")
	for _, r := range rep.Rows {
		abs, rel := "-", "-"
		if r.Result != NotApplicable {
			abs, rel = fmt.Sprintf("%.2e", r.MaxAbs), fmt.Sprintf("%.2e", r.MaxRel)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0fms\n", r.Case, r.Backend, r.Result, abs, rel, r.Millis)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var pass, fail, na int
	for _, r := range rep.Rows {
		switch r.Result {
		case Pass:
			pass++
		case Fail:
			fail++
			fmt.Fprintf(w, "\nFAIL %s on %s (%s):\n", r.Case, r.Backend, r.File)
			for _, c := range r.Checks {
				if c.Result == Fail {
					fmt.Fprintf(w, "  %s: %s\n", c.Name, c.Detail)
				}
			}
		case NotApplicable:
			na++
		}
	}
	if na > 0 {
		fmt.Fprintln(w, "\nnot applicable (the backend cannot load the case's model, or the model cannot express the case):")
		for _, r := range rep.Rows {
			if r.Result == NotApplicable {
				reason := r.Reason
				if len(reason) > maxReason {
					reason = reason[:maxReason] + "…"
				}
				fmt.Fprintf(w, "  %s on %s: %s\n", r.Case, r.Backend, reason)
			}
		}
	}
	var naChecks []string
	for _, r := range rep.Rows {
		for _, c := range r.Checks {
			if c.Result == NotApplicable {
				naChecks = append(naChecks, fmt.Sprintf("  %s on %s: %s: %s\n", r.Case, r.Backend, c.Name, c.Detail))
			}
		}
	}
	if len(naChecks) > 0 {
		fmt.Fprintln(w, "\nchecks not applicable (the model cannot express them):")
		for _, line := range naChecks {
			fmt.Fprint(w, line)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d not applicable\n", pass, fail, na)
	return nil
}

// Summary returns the checks of a row as "name=result" pairs, for logs.
func (r Row) Summary() string {
	var parts []string
	for _, c := range r.Checks {
		parts = append(parts, c.Name+"="+string(c.Result))
	}
	return strings.Join(parts, " ")
}
