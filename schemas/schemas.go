// Package schemas holds the JSON Schemas (draft 2020-12) of chokepoint's
// JSON documents — report.json, manifest.json, compare and load output —
// and validates documents against them.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed *.json
var files embed.FS

// BaseURL is where the schemas' $id values live; cross-file $refs resolve
// against it.
const BaseURL = "https://github.com/chokepoint/chokepoint/schemas/"

// ErrInvalid is wrapped by every *Error: the document does not match.
var ErrInvalid = errors.New("document does not match its schema")

// Error lists where a document breaks its schema.
type Error struct {
	Schema   string    // the schema file, e.g. report.v1.json
	Problems []Problem // at least one, in document order
}

// Problem is one place where a document breaks its schema.
type Problem struct {
	Pointer string // JSON pointer into the document ("" is the whole document)
	Message string
}

// maxListed bounds the problems Error prints; all are in Problems.
const maxListed = 10

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Schema)
	b.WriteString(": ")
	for i, p := range e.Problems {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		ptr := p.Pointer
		if ptr == "" {
			ptr = "/"
		}
		b.WriteString(ptr)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Names returns the schema files, sorted.
func Names() []string {
	names, _ := fs.Glob(files, "*.json")
	sort.Strings(names)
	return names
}

// fileName maps a document's schema identifier ("chokepoint.report/v1") or
// a short name ("report.v1") to its file ("report.v1.json").
func fileName(name string) string {
	if rest, ok := strings.CutPrefix(name, "chokepoint."); ok {
		name = strings.Replace(rest, "/", ".", 1)
	}
	if !strings.HasSuffix(name, ".json") {
		name += ".json"
	}
	return name
}

// compiled is every schema, compiled once on first use and read-only after.
var compiled = sync.OnceValues(compileAll)

func compileAll() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	names := Names()
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
		if err := c.AddResource(BaseURL+n, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
	}
	out := make(map[string]*jsonschema.Schema, len(names))
	for _, n := range names {
		s, err := c.Compile(BaseURL + n)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
		out[n] = s
	}
	return out, nil
}

// Validate checks doc (JSON) against a schema, named by file
// ("report.v1.json"), short name ("report.v1") or the document's own
// schema identifier ("chokepoint.report/v1"). A mismatch is an *Error whose
// problems name JSON pointers into doc.
func Validate(schemaName string, doc []byte) error {
	all, err := compiled()
	if err != nil {
		return fmt.Errorf("compile schemas: %w", err)
	}
	name := fileName(schemaName)
	s, ok := all[name]
	if !ok {
		return fmt.Errorf("schema %s: unknown (have %s)", schemaName, strings.Join(Names(), ", "))
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return &Error{Schema: name, Problems: []Problem{{Message: "not JSON: " + err.Error()}}}
	}
	err = s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate against %s: %w", name, err)
	}
	e := &Error{Schema: name}
	leaves(ve, message.NewPrinter(language.English), &e.Problems)
	sort.SliceStable(e.Problems, func(i, j int) bool { return e.Problems[i].Pointer < e.Problems[j].Pointer })
	return e
}

// leaves collects the innermost causes: they say what is wrong, where the
// outer ones only repeat that something below is.
func leaves(e *jsonschema.ValidationError, pr *message.Printer, out *[]Problem) {
	if len(e.Causes) == 0 {
		p := Problem{Pointer: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(pr)}
		for _, q := range *out {
			if q == p {
				return
			}
		}
		*out = append(*out, p)
		return
	}
	for _, c := range e.Causes {
		leaves(c, pr, out)
	}
}

// pointer builds an RFC 6901 JSON pointer.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}
