package token

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// jsonCases are JSON texts at the edges of what decodeObject accepts.
var jsonCases = []string{
	`{}`, ` { } `, "\t{\"a\":1}\n", `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"a":1,"a":2}}`,
	`{"a":[1,{"b":2}],"c":"x:y,z"}`, `{"a":"\"}","b":1}`, `{"a\\":1,"b":"\\"}`, `null`, `[]`, `"x"`, `1`,
	`{"a":1} {"b":2}`, `{"a":1}x`, `{"a":1`, `{"a" 1}`, `{a:1}`, `{"a":1,}`, "\xef\xbb\xbf{}", `{"a":"\xff"}`,
	`{"\xff":1,"\xfe":2}`, `{"a":1e999}`, `{"a":-0.0}`, `{"":1,"":2}`, `{"a":"b","b":"a","c":{"d":[":",":"]}}`,
	`{"acr":"aal2","amr":["pwd","otp"],"exp":1800000000,"sub":"u\n"}`, `{"x":"` + strings.Repeat("[", 20) + `"}`,
	// The flat scanner's edges: numbers, literals, arrays, spaces, UTF-8.
	`{"n":0,"m":-0,"o":1.5e-3,"p":1E+9,"q":-12.25}`, `{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"n":1e}`, `{"n":1e+}`,
	`{"n":.5}`, `{"n":+1}`, `{"n":1x}`, `{"t":true,"f":false,"z":null}`, `{"t":tru}`, `{"t":nulll}`, `{"t":True}`,
	`{"a":[]}`, `{"a":[ ]}`, `{"a":[1,"x",true,null]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[[1]]}`, `{"a":[{"b":1}]}`,
	`{"a":["x" , "y"]}`, "{\"a\"\t:\r\n\"b\"\n}", `{"a":"b"  ,  "c":"d"}`, `{"a":"b" "c":"d"}`, `{"a":"b",}`, `{,}`,
	`{"ü":"✓"}`, "{\"a\":\"\xc3\"}", "{\"\xc3\":1}", "{\"a\":\"x\x01\"}", `{"a":"b"}}`, `{"a":"b"`, `{"a"}`, `{"a":}`,
	`{"aud":["https://api.example.com","other"],"amr":["pwd"],"scp":"a b"}`, `{"amr":["pwd","\u006f"]}`,
}

func sameDecode(t *testing.T, b []byte) {
	t.Helper()
	got, gotErr := decodeObject(b, "payload")
	want, wantErr := decodeObjectStream(b, "payload")
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeObject(%q) = %v, %v; the token decoder gives %v, %v", b, got, gotErr, want, wantErr)
	}
}

// TestDecodeObjectFast holds the fast path to the token-by-token decoder:
// the same members or the same error, for edge cases, the fuzz corpora and
// random objects with mutations.
func TestDecodeObjectFast(t *testing.T) {
	for _, c := range jsonCases {
		sameDecode(t, []byte(c))
	}
	corpus, _ := filepath.Glob("testdata/fuzz/*/*")
	for _, path := range corpus {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			// Corpus values are Go-quoted strings or []byte literals.
			if i := strings.IndexByte(line, '"'); i >= 0 {
				var s string
				if _, err := fmt.Sscanf(line[i:], "%q", &s); err == nil {
					sameDecode(t, []byte(s))
					for _, part := range strings.Split(s, ".") {
						if dec, err := b64.DecodeString(part); err == nil {
							sameDecode(t, dec)
						}
					}
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	keys := []string{"iss", "sub", "aud", "acr", "amr", "exp", "a\\\"b", "ü", ""}
	values := []string{`"x"`, `1`, `-1.5e3`, `true`, `null`, `[]`, `["a","b"]`, `{"k":"v","k":1}`, `"\u00fc\n"`, `"a\"b"`, `""`}
	for range 20000 {
		var sb strings.Builder
		sb.WriteString("{")
		for j := range r.IntN(6) {
			if j > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "%q:%s", keys[r.IntN(len(keys))], values[r.IntN(len(values))])
		}
		sb.WriteString("}")
		b := []byte(sb.String())
		if r.IntN(3) == 0 && len(b) > 0 {
			b[r.IntN(len(b))] = "{}[]\",:\\ x1"[r.IntN(11)]
		}
		sameDecode(t, b)
	}
}

// TestUnquote holds unquote to json.Unmarshal on JSON strings of every kind.
func TestUnquote(t *testing.T) {
	var raws []string
	for _, s := range []string{"", "a", "aal2", "ü✓", "\x00", "\x1f", "tab\t", `"`, `\`, "\u2028", "\xff", "a\xc3", "\xed\xa0\x80"} {
		q, _ := json.Marshal(s)
		raws = append(raws, string(q), `"`+s+`"`)
	}
	raws = append(raws, `"\u0061"`, `"\n"`, `"a`, `a"`, `"`, `""""`, `"\ud800"`)
	for _, raw := range raws {
		var got, want string
		ok := unquote(json.RawMessage(raw), &got)
		wantOK := json.Unmarshal([]byte(raw), &want) == nil
		if ok != wantOK || got != want {
			t.Errorf("unquote(%q) = %q, %v; json.Unmarshal gives %q, %v", raw, got, ok, want, wantOK)
		}
	}
}

// FuzzDecodeObject is TestDecodeObjectFast's property on any input.
func FuzzDecodeObject(f *testing.F) {
	for _, c := range jsonCases[:len(jsonCases)-2] {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameDecode(t, b) })
}

// TestStringsMemberFast holds the array fast path to encoding/json.
func TestStringsMemberFast(t *testing.T) {
	for _, raw := range []string{`[]`, `[ ]`, `["a"]`, `["a","b"]`, `[ "a" , "b" ]`, `["a",1]`, `["\u0061"]`, `["a",]`,
		`[["a"]]`, `["ü"]`, "[\"\xc3\"]", `[null]`, `["a" "b"]`, `[`, `["a"`} {
		got, gotErr := stringsMember(map[string]json.RawMessage{"amr": json.RawMessage(raw)}, "amr", false)
		var want []string
		var wantErr error
		var items []json.RawMessage
		if json.Unmarshal([]byte(raw), &items) != nil {
			wantErr = fmt.Errorf("bad")
		} else {
			want = []string{}
			for _, it := range items {
				var s string
				if len(it) == 0 || it[0] != '"' || json.Unmarshal(it, &s) != nil {
					want, wantErr = nil, fmt.Errorf("bad")
					break
				}
				want = append(want, s)
			}
		}
		if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("stringsMember(%s) = %q, %v; encoding/json gives %q, %v", raw, got, gotErr, want, wantErr)
		}
	}
}
