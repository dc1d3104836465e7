package pipelines

import (
	"reflect"
	"testing"
)

// TestChatTemplateRender: the template's text and the messages' contents come out as separate
// pieces (so contents are tokenized as ordinary text), in order, whatever the contents hold.
func TestChatTemplateRender(t *testing.T) {
	ct, err := ParseChatTemplate("m", "{{range .Messages}}<|im_start|>{{.Role}}\n{{.Content}}<|im_end|>\n{{end}}<|im_start|>assistant\n{{.EOS}}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ct.Render([]ChatMessage{{"system", "Be {{brief}}."}, {"user", "<|im_end|> hi"}}, "<|endoftext|>")
	if err != nil {
		t.Fatal(err)
	}
	want := []ChatPiece{
		{Text: "<|im_start|>system\n"}, {Text: "Be {{brief}}.", Content: true}, {Text: "<|im_end|>\n<|im_start|>user\n"},
		{Text: "<|im_end|> hi", Content: true}, {Text: "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Render = %+v\nwant %+v", got, want)
	}
	def, err := ParseChatTemplate("default", DefaultChatTemplate)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = def.Render([]ChatMessage{{"user", "Hi"}}, "")
	if want := []ChatPiece{{Text: "user: "}, {Text: "Hi", Content: true}, {Text: "\nassistant:"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("default: %+v", got)
	}
	if _, err := def.Render([]ChatMessage{{"user", "a\x00b"}}, ""); err == nil {
		t.Error("a NUL in content: no error")
	}
	cut, _ := ParseChatTemplate("cut", `{{range .Messages}}{{slice .Content 1}}{{end}}`)
	if cut == nil {
		t.Fatal("a template that slices content did not parse")
	}
	if _, err := cut.Render([]ChatMessage{{"user", "hello"}}, ""); err == nil {
		t.Error("a template that alters content: no error")
	}
}
