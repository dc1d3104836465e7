package pipelines

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// ChatMessage is one message of a chat, as a chat template sees it.
type ChatMessage struct {
	// Role is "system", "user" or "assistant" (OpenAI's "developer" arrives as "system").
	Role string
	// Content is the message's text. A template must print it as is ({{.Content}}): it is
	// tokenized apart from the template's own text, as ordinary text (see ChatPiece).
	Content string
}

// ChatData is what a chat template is executed with.
type ChatData struct {
	Messages []ChatMessage
	// EOS is the text of the model's end-of-sequence token ("<|endoftext|>" for GPT-2), ""
	// when the model has none.
	EOS string
}

// DefaultChatTemplate is the prompt of a model that declares no chat_template: one line per
// message, "role: content", then "assistant:" for the model to continue.
const DefaultChatTemplate = "{{range .Messages}}{{.Role}}: {{.Content}}\n{{end}}assistant:"

// ChatTemplate is a model's parsed chat_template (a Go text/template).
type ChatTemplate struct {
	t *template.Template
}

// ParseChatTemplate parses src and executes it once on a sample chat, so that a reference to
// a field that does not exist fails at load time rather than on a request.
func ParseChatTemplate(name, src string) (*ChatTemplate, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, err
	}
	ct := &ChatTemplate{t: t}
	sample := []ChatMessage{{"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "v"}}
	if _, err := ct.Render(sample, "<eos>"); err != nil {
		return nil, err
	}
	return ct, nil
}

// ChatPiece is a run of a rendered chat prompt: the template's own text (which may spell
// special tokens, such as "<|im_start|>") or a message's content (Content true: tokenized as
// ordinary text, so that a user cannot type a control token).
type ChatPiece struct {
	Text    string
	Content bool
}

// contentMark delimits the place of message i's content in the template's output; NUL does
// not occur in JSON-decoded text a template would print by itself.
func contentMark(i int) string { return "\x00" + strconv.Itoa(i) + "\x00" }

// Render executes the template on messages and splits its output into pieces.
func (c *ChatTemplate) Render(messages []ChatMessage, eos string) ([]ChatPiece, error) {
	marked := make([]ChatMessage, len(messages))
	for i, m := range messages {
		if strings.Contains(m.Content, "\x00") {
			return nil, fmt.Errorf("message %d: content holds a NUL character", i)
		}
		marked[i] = ChatMessage{Role: m.Role, Content: contentMark(i)}
	}
	var b strings.Builder
	if err := c.t.Execute(&b, ChatData{Messages: marked, EOS: eos}); err != nil {
		return nil, err
	}
	parts := strings.Split(b.String(), "\x00")
	if len(parts)%2 == 0 {
		return nil, fmt.Errorf("the template cut a message's content (print {{.Content}} as is)")
	}
	var out []ChatPiece
	for i, p := range parts {
		if i%2 == 0 {
			if p != "" {
				out = append(out, ChatPiece{Text: p})
			}
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n >= len(messages) {
			return nil, fmt.Errorf("the template altered a message's content (print {{.Content}} as is)")
		}
		if messages[n].Content != "" {
			out = append(out, ChatPiece{Text: messages[n].Content, Content: true})
		}
	}
	return out, nil
}
