package conf

import (
	"testing"
)

// FuzzLoad checks that no input makes Load panic, and that whatever it
// accepts is internally consistent.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"ranges":[{"subnet":"10.1.0.0/24"}]}}`), "IP=10.1.0.4")
	f.Add([]byte(`{"cniVersion":"0.4.0","name":"n","ipam":{"ranges":[{"subnet":"fd00::/64","rangeStart":"fd00::9"}],"routes":[{"dst":"::/0"}]}}`), "")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","mtu":9000,"ipam":{"ranges":[{"subnet":"10.0.0.0/31"},{"subnet":"10.0.0.2/32"}]}}`), "K8S_POD_NAME=a;K8S_POD_NAMESPACE=b")
	f.Add([]byte(`{`), "")
	f.Fuzz(func(t *testing.T, stdin []byte, args string) {
		c, err := Load(stdin, args)
		if err != nil {
			if CNI(err) == nil || CNI(err).Msg == "" {
				t.Fatalf("error without CNI form: %v", err)
			}
			return
		}
		if len(c.Ranges) == 0 {
			t.Fatal("accepted config without ranges")
		}
		for _, r := range c.Ranges {
			if !r.Contains(r.Start) || !r.Contains(r.End) {
				t.Fatalf("range %v does not contain its bounds", r)
			}
		}
		for _, a := range c.Requested {
			in := false
			for _, r := range c.Ranges {
				in = in || r.Contains(a)
			}
			if !in {
				t.Fatalf("requested %s outside ranges", a)
			}
		}
	})
}
