package plugin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestOpenNetNSRefusesWhatIsNotANetworkNamespace(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"mount namespace", "/proc/self/ns/mnt"},
		{"UTS namespace", "/proc/self/ns/uts"},
		{"procfs file that is no namespace", "/proc/self/status"},
		{"plain file", plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := openNetNS(tc.path)
			if err == nil {
				h.Close()
				t.Fatalf("openNetNS(%s) accepted it", tc.path)
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != types.ErrInvalidNetNS {
				t.Fatalf("openNetNS(%s) = %v, want CNI error code %d", tc.path, err, types.ErrInvalidNetNS)
			}
			if !strings.Contains(te.Msg, "not a network namespace") || !strings.Contains(te.Msg, tc.path) {
				t.Errorf("message %q does not name %s as no network namespace", te.Msg, tc.path)
			}
		})
	}
}
