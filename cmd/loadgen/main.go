// Command loadgen is a small, bounded load generator for `modelrt serve`: it sends a fixed
// number of OpenAI completions at each of several concurrency levels and reports completions
// per second, generated tokens per second, and p50/p99 latency (and, when streaming, p50/p99
// of the time to first token and of the inter-token latency). -out writes the levels as JSON
// and -plot a PNG of throughput and latency against concurrency (with -before, a previous
// -out file beside it: before/after). It talks only to loopback addresses unless told otherwise, so that a benchmark
// never becomes a load test of someone else's server.
//
//	go run ./cmd/loadgen -url http://127.0.0.1:8080 -model gpt2 -concurrency 1,4,16 -requests 64
//	go run ./cmd/loadgen -stream -concurrency 1,2,4,8,16 -out after.json -before before.json -plot batching.png
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type config struct {
	url         string
	model       string
	prompt      string
	maxTokens   int
	temperature float64
	levels      []int
	requests    int
	stream      bool
	token       string
	timeout     time.Duration
	warmup      int
	rounds      int // >0: each level sends rounds × concurrency requests instead of requests
	// newcomer: streams decoding in the background while probes measure a newcomer's time to
	// first token (0: off); probes, probeTokens: the probes sent idle and then beside them.
	newcomer, probes, probeTokens int
	label                         string
}

// result is one request's outcome.
type result struct {
	latency, firstToken time.Duration
	gaps                []time.Duration // between consecutive text chunks of a stream
	tokens              int
	err                 error
}

// level is the summary of one concurrency level.
type level struct {
	Concurrency    int     `json:"concurrency"`
	Requests       int     `json:"requests"`
	Errors         int     `json:"errors"`
	WallS          float64 `json:"wall_s"`
	CompletionsPS  float64 `json:"completions_per_s"`
	TokensPS       float64 `json:"tokens_per_s"`
	P50MS          float64 `json:"p50_ms"`
	P99MS          float64 `json:"p99_ms"`
	FirstTokenP50  float64 `json:"first_token_p50_ms,omitempty"`
	FirstTokenP99  float64 `json:"first_token_p99_ms,omitempty"`
	InterTokenP50  float64 `json:"inter_token_p50_ms,omitempty"`
	InterTokenP99  float64 `json:"inter_token_p99_ms,omitempty"`
	MeanTokens     float64 `json:"mean_tokens"`
	FirstErrorText string  `json:"first_error,omitempty"`
}

func main() {
	var c config
	var levels string
	var remote, asJSON bool
	var out, plotFile, before string
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of modelrt serve")
	flag.StringVar(&c.model, "model", "gpt2", "model name")
	flag.StringVar(&c.prompt, "prompt", "Once upon a time", "prompt")
	flag.IntVar(&c.maxTokens, "max-tokens", 32, "max_tokens of each completion")
	flag.Float64Var(&c.temperature, "temperature", 0, "temperature (0: greedy, so every request does the same work)")
	flag.StringVar(&levels, "concurrency", "1,4,16", "comma-separated concurrency levels")
	flag.IntVar(&c.requests, "requests", 64, "requests per level")
	flag.IntVar(&c.warmup, "warmup", 4, "requests sent before the first level, not counted")
	flag.BoolVar(&c.stream, "stream", false, "stream (SSE) and measure time to first token")
	flag.StringVar(&c.token, "token", os.Getenv("MODELRT_TOKEN"), "bearer token (default $MODELRT_TOKEN)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "time limit of one request")
	flag.BoolVar(&remote, "allow-remote", false, "allow a URL that is not a loopback address")
	flag.BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	flag.StringVar(&out, "out", "", "write the levels to this JSON file")
	flag.StringVar(&plotFile, "plot", "", "write a PNG of throughput and latency against concurrency")
	flag.StringVar(&before, "before", "", "a previous -out file to plot beside this run (before/after)")
	flag.StringVar(&c.label, "label", "", "name of this run in the plot's legend (default: after; the -before file's own label or before)")
	flag.IntVar(&c.rounds, "rounds", 0, "each level sends rounds × concurrency requests (0: -requests at every level)")
	flag.IntVar(&c.newcomer, "newcomer", 0, "also measure a newcomer's time to first token while this many streams decode, against idle (streaming; 0: off)")
	flag.IntVar(&c.probes, "probes", 8, "with -newcomer: probe requests idle and then beside the streams")
	flag.IntVar(&c.probeTokens, "probe-tokens", 8, "with -newcomer: max_tokens of a probe")
	flag.Parse()

	if err := c.check(levels, remote); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: slices.Max(c.levels)}, Timeout: c.timeout}
	for range c.warmup {
		if r := c.one(client); r.err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: warm-up request:", r.err)
			os.Exit(1)
		}
	}
	var prev *report
	if before != "" {
		r, err := readReport(before)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		prev = r
	}
	if !asJSON {
		fmt.Printf("| concurrency | requests | errors | completions/s | tokens/s | p50 ms | p99 ms |%s\n", map[bool]string{true: " first token p50/p99 ms | inter-token p50/p99 ms |"}[c.stream])
		fmt.Printf("|---|---|---|---|---|---|---|%s\n", map[bool]string{true: "---|---|"}[c.stream])
	}
	rep := &report{Model: c.model, MaxTokens: c.maxTokens, Stream: c.stream, Requests: c.requests, Rounds: c.rounds, URL: c.url, Label: c.label}
	defer func() {
		if err := rep.save(out, plotFile, prev); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}()
	for _, n := range c.levels {
		l := c.run(client, n)
		rep.Levels = append(rep.Levels, l)
		if asJSON {
			b, _ := json.Marshal(l)
			fmt.Println(string(b))
			continue
		}
		ft := ""
		if c.stream {
			ft = fmt.Sprintf(" %.1f / %.1f | %.1f / %.1f |", l.FirstTokenP50, l.FirstTokenP99, l.InterTokenP50, l.InterTokenP99)
		}
		fmt.Printf("| %d | %d | %d | %.1f | %.0f | %.1f | %.1f |%s\n", l.Concurrency, l.Requests, l.Errors, l.CompletionsPS, l.TokensPS, l.P50MS, l.P99MS, ft)
		if l.FirstErrorText != "" {
			fmt.Fprintln(os.Stderr, "loadgen: first error:", l.FirstErrorText)
		}
	}
	if c.newcomer > 0 {
		nc := c.newcomerTTFT(client)
		rep.Newcomer = &nc
		if asJSON {
			b, _ := json.Marshal(nc)
			fmt.Println(string(b))
		} else {
			fmt.Printf("\nnewcomer time to first token (%d probes of %d tokens): idle p50 %.1f ms p99 %.1f ms; beside %d decoding streams p50 %.1f ms p99 %.1f ms (%.2f× idle p50)\n",
				nc.Probes, c.probeTokens, nc.IdleP50MS, nc.IdleP99MS, nc.Streams, nc.BusyP50MS, nc.BusyP99MS, nc.Ratio)
		}
		if nc.FirstErrorText != "" {
			fmt.Fprintln(os.Stderr, "loadgen: newcomer: first error:", nc.FirstErrorText)
		}
	}
}

// newcomer is the -newcomer measurement.
type newcomer struct {
	Streams        int     `json:"streams"`
	Probes         int     `json:"probes"`
	ProbeTokens    int     `json:"probe_tokens"`
	IdleP50MS      float64 `json:"idle_first_token_p50_ms"`
	IdleP99MS      float64 `json:"idle_first_token_p99_ms"`
	BusyP50MS      float64 `json:"busy_first_token_p50_ms"`
	BusyP99MS      float64 `json:"busy_first_token_p99_ms"`
	Ratio          float64 `json:"busy_over_idle_p50"`
	Errors         int     `json:"errors"`
	FirstErrorText string  `json:"first_error,omitempty"`
}

// newcomerTTFT sends c.probes streaming probes one after another with nothing else running,
// then starts c.newcomer streams that send c.maxTokens-token requests back to back and, once
// every one of them is decoding, sends the probes again, spaced by a few milliseconds so that
// they arrive at different points of the streams' steps.
func (c *config) newcomerTTFT(client *http.Client) newcomer {
	nc := newcomer{Streams: c.newcomer, Probes: c.probes, ProbeTokens: c.probeTokens}
	note := func(err error) {
		if nc.Errors++; nc.FirstErrorText == "" {
			nc.FirstErrorText = err.Error()
		}
	}
	probe := func() []time.Duration {
		var ft []time.Duration
		for i := range c.probes {
			r := c.request(context.Background(), client, c.probeTokens, true)
			if r.err != nil {
				note(r.err)
				continue
			}
			ft = append(ft, r.firstToken)
			time.Sleep(time.Duration(3+7*i%11) * time.Millisecond)
		}
		return ft
	}
	idle := probe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	decoding := make(chan struct{}, c.newcomer)
	for range c.newcomer {
		wg.Go(func() {
			first := true
			for ctx.Err() == nil {
				r := c.streamUntil(ctx, client, func() {
					if first {
						first = false
						decoding <- struct{}{}
					}
				})
				if r.err != nil && ctx.Err() == nil {
					note(r.err)
					return
				}
			}
		})
	}
	started := 0
	deadline := time.After(c.timeout)
wait:
	for started < c.newcomer {
		select {
		case <-decoding:
			started++
		case <-deadline:
			break wait
		}
	}
	var busy []time.Duration
	if started == c.newcomer {
		busy = probe()
	} else {
		note(fmt.Errorf("only %d of %d background streams started decoding within %v", started, c.newcomer, c.timeout))
	}
	cancel()
	wg.Wait()
	if len(idle) > 0 {
		nc.IdleP50MS, nc.IdleP99MS = ms(percentile(idle, 50)), ms(percentile(idle, 99))
	}
	if len(busy) > 0 {
		nc.BusyP50MS, nc.BusyP99MS = ms(percentile(busy, 50)), ms(percentile(busy, 99))
	}
	if nc.IdleP50MS > 0 {
		nc.Ratio = nc.BusyP50MS / nc.IdleP50MS
	}
	return nc
}

func (c *config) check(levels string, remote bool) error {
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("-concurrency %q: want numbers in 1..1024", levels)
		}
		c.levels = append(c.levels, n)
	}
	if c.requests < 1 || c.requests > 100000 {
		return fmt.Errorf("-requests %d: want 1..100000", c.requests)
	}
	u, err := url.Parse(c.url)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port", c.url)
	}
	if !remote {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("-url %s is not a loopback address (pass -allow-remote to load a server you run elsewhere)", c.url)
		}
	}
	c.url = strings.TrimSuffix(c.url, "/")
	return nil
}

// run sends c.requests requests with n workers.
func (c *config) run(client *http.Client, n int) level {
	requests := c.requests
	if c.rounds > 0 {
		requests = c.rounds * n
	}
	results := make([]result, requests)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= requests {
					return
				}
				results[i] = c.one(client)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	l := level{Concurrency: n, Requests: requests, WallS: wall.Seconds()}
	var lat, ft, gaps []time.Duration
	tokens := 0
	for _, r := range results {
		if r.err != nil {
			if l.Errors++; l.FirstErrorText == "" {
				l.FirstErrorText = r.err.Error()
			}
			continue
		}
		lat = append(lat, r.latency)
		ft = append(ft, r.firstToken)
		gaps = append(gaps, r.gaps...)
		tokens += r.tokens
	}
	ok := len(lat)
	l.CompletionsPS = float64(ok) / wall.Seconds()
	l.TokensPS = float64(tokens) / wall.Seconds()
	if ok > 0 {
		l.P50MS, l.P99MS = ms(percentile(lat, 50)), ms(percentile(lat, 99))
		l.MeanTokens = float64(tokens) / float64(ok)
		if c.stream {
			l.FirstTokenP50, l.FirstTokenP99 = ms(percentile(ft, 50)), ms(percentile(ft, 99))
		}
		if len(gaps) > 0 {
			l.InterTokenP50, l.InterTokenP99 = ms(percentile(gaps, 50)), ms(percentile(gaps, 99))
		}
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// percentile is the nearest-rank percentile p of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// one sends one completion and reads it to the end.
func (c *config) one(client *http.Client) result {
	return c.request(context.Background(), client, c.maxTokens, c.stream)
}

// streamUntil sends one streaming completion of c.maxTokens, calling first when its first
// text arrives; it ends with the stream or with ctx.
func (c *config) streamUntil(ctx context.Context, client *http.Client, first func()) result {
	return c.requestHook(ctx, client, c.maxTokens, true, first)
}

// request sends one completion of maxTokens and reads it to the end.
func (c *config) request(ctx context.Context, client *http.Client, maxTokens int, stream bool) result {
	return c.requestHook(ctx, client, maxTokens, stream, nil)
}

func (c *config) requestHook(ctx context.Context, client *http.Client, maxTokens int, stream bool, first func()) result {
	body, _ := json.Marshal(map[string]any{
		"model": c.model, "prompt": c.prompt, "max_tokens": maxTokens, "temperature": c.temperature,
		"stream": stream, "stream_options": map[string]bool{"include_usage": stream},
	})
	req, err := http.NewRequestWithContext(ctx, "POST", c.url+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return result{err: fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))}
	}
	type usage struct {
		CompletionTokens int `json:"completion_tokens"`
	}
	if !stream {
		var doc struct{ Usage usage }
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return result{err: err}
		}
		d := time.Since(t0)
		return result{latency: d, firstToken: d, tokens: doc.Usage.CompletionTokens}
	}
	r := result{}
	var last time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			r.latency = time.Since(t0)
			return r
		}
		var chunk struct {
			Choices []struct{ Text string }
			Usage   *usage
			Error   json.RawMessage
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return result{err: err}
		}
		if chunk.Error != nil {
			return result{err: fmt.Errorf("error event: %s", chunk.Error)}
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Text != "" {
			now := time.Now()
			if r.firstToken == 0 {
				r.firstToken = now.Sub(t0)
				if first != nil {
					first()
				}
			} else {
				// A chunk is text that became final: usually one token, sometimes several
				// (a UTF-8 character, text held back by a stop string).
				r.gaps = append(r.gaps, now.Sub(last))
			}
			last = now
		}
		if chunk.Usage != nil {
			r.tokens = chunk.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		return result{err: err}
	}
	return result{err: errors.New("stream ended without [DONE]")}
}
