package profilesum

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes (as a target could serve them) to the
// profile decoder and every summary: nothing may panic, and a decoded
// profile must summarise without error for its own sample types.
func FuzzDecode(f *testing.F) {
	p := synth([]string{"contentions/count", "delay/nanoseconds"},
		st(v(1, 10), "sync.(*Mutex).Unlock", "main.f"))
	var gz, raw bytes.Buffer
	if err := p.Write(&gz); err != nil {
		f.Fatal(err)
	}
	if err := p.WriteUncompressed(&raw); err != nil {
		f.Fatal(err)
	}
	f.Add(gz.Bytes())
	f.Add(raw.Bytes())
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	const maxBytes = 1 << 20 // fuzz memory bound
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(bytes.NewReader(data), maxBytes)
		if err != nil {
			return
		}
		for _, st := range p.SampleType {
			if _, err := Functions(p, st.Type); err != nil {
				t.Errorf("Functions(%q): %v", st.Type, err)
			}
			if _, err := Attribute(p, st.Type, Options{}); err != nil {
				t.Errorf("Attribute(%q): %v", st.Type, err)
			}
			if _, _, err := HotPaths(p, st.Type, HotPathOptions{}); err != nil {
				t.Errorf("HotPaths(%q): %v", st.Type, err)
			}
			if _, _, err := SiteEntries(p, st.Type, "main.f", Options{}); err != nil {
				t.Errorf("SiteEntries(%q): %v", st.Type, err)
			}
		}
		_, _ = GC(p)
		_, _, _ = LockDelay(p, Options{})
		_, _, _ = HeapSites(p, Options{})
		_, _ = Goroutines(p, Options{})
		_, _ = Delta(p, p)
		_, _ = SiteEntryGrowth(p, p, "main.f", Options{})
	})
}
