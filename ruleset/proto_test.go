package ruleset

import (
	"strings"
	"testing"
)

// TestProtoNumberInvertsProtoName pins the one table of protocol names:
// ProtoNumber reads back what ProtoName writes, in any case, and knows no
// other protocol.
func TestProtoNumberInvertsProtoName(t *testing.T) {
	for _, n := range []uint8{ProtoTCP, ProtoUDP, ProtoSCTP} {
		for _, name := range []string{ProtoName(n), strings.ToUpper(ProtoName(n))} {
			if got, ok := ProtoNumber(name); !ok || got != n {
				t.Errorf("ProtoNumber(%q) = %d, %v; want %d", name, got, ok, n)
			}
		}
	}
	for _, name := range []string{"", "icmp", "1", "47", "tcp "} {
		if got, ok := ProtoNumber(name); ok {
			t.Errorf("ProtoNumber(%q) = %d, want no protocol", name, got)
		}
	}
}
