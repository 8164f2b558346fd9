package nft

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestUnsupported(t *testing.T) {
	wrap := func(errno unix.Errno) error {
		return fmt.Errorf("open nftables netlink: %w", &netlink.OpError{Op: "dial", Err: os.NewSyscallError("socket", errno)})
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"no nfnetlink: socket refused", wrap(unix.EPROTONOSUPPORT), true},
		{"no nf_tables subsystem behind nfnetlink", wrap(unix.EOPNOTSUPP), true},
		{"no nf_tables subsystem, older kernels", wrap(unix.EINVAL), true},
		{"no inet family", wrap(unix.EAFNOSUPPORT), true},
		{"no CAP_NET_ADMIN is not a missing nf_tables", wrap(unix.EPERM), false},
		{"a full buffer is not a missing nf_tables", wrap(unix.ENOBUFS), false},
		{"an error without errno", errors.New("decode: short message"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unsupported(tc.err); got != tc.want {
				t.Errorf("Unsupported(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
