package ipam

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirState is what one read of a store directory found.
type dirState struct {
	held   map[netip.Addr]Attachment
	last   map[string]cursor     // by range key
	attIno map[Attachment]uint64 // attachment name -> its inode
	spares []spare               // inodes ready for reuse
	stale  []string              // names Cleanup removes
}

// spare is an attachment inode kept for reuse.
type spare struct {
	name string
	ino  uint64
}

// cursor is one range's "last reserved" entry.
type cursor struct {
	name string
	addr netip.Addr
}

func attName(a Attachment) string { return attPrefix + a.ContainerID + "@" + a.IfName }
func spareName(ino uint64) string { return sparePrefix + strconv.FormatUint(ino, 10) }
func cursorName(key string, ip netip.Addr) string {
	return lastPrefix + key + "@" + ip.String()
}

// parseTarget reads a foreign claim's symlink target "containerID/ifname".
func parseTarget(t string) Attachment {
	cid, ifname, _ := strings.Cut(t, "/")
	return Attachment{ContainerID: cid, IfName: ifname}
}

// scanDir reads the directory with getdents(2) only: an address's holder is
// the attachment name sharing its inode, so no per-address syscall is
// needed. An address whose inode matches no attachment name (a directory
// copied without its hard links, a foreign file) is held by the zero
// Attachment, or by what its symlink target names if it is a symlink.
func scanDir(dir string, fd int, buf []byte) (*dirState, error) {
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		return nil, fmt.Errorf("read store: %w", err)
	}
	var sz syscall.Stat_t
	if err := syscall.Fstat(fd, &sz); err != nil {
		return nil, fmt.Errorf("read store: %w", err)
	}
	hint := int(min(sz.Size/64, 1<<16)) // about one entry per 64 bytes of directory
	st := &dirState{held: make(map[netip.Addr]Attachment, hint), last: map[string]cursor{},
		attIno: make(map[Attachment]uint64, hint/2)}
	ipIno := make(map[netip.Addr]uint64, hint)
	inoAtt := make(map[uint64]Attachment, hint/2)
	var spares []spare
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read store: %w", err)
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) >= 19; {
			ino := binary.NativeEndian.Uint64(b[0:8])
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("read store %s: malformed directory entry", dir)
			}
			raw := b[19:reclen]
			if i := bytes.IndexByte(raw, 0); i >= 0 {
				raw = raw[:i]
			}
			if name := string(raw); strings.HasPrefix(name, sparePrefix) {
				spares = append(spares, spare{name: name, ino: ino})
			} else {
				st.add(name, ino, ipIno, inoAtt)
			}
			b = b[reclen:]
		}
	}
	for ip, ino := range ipIno {
		if a, ok := inoAtt[ino]; ok && ino != 0 {
			st.held[ip] = a
			continue
		}
		t, err := readlinkAt(fd, ip.String())
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err == nil:
			st.held[ip] = parseTarget(t)
		default: // not a symlink: reserved by someone unknown
			st.held[ip] = Attachment{}
		}
	}
	used := make(map[uint64]bool, len(ipIno))
	for _, ino := range ipIno {
		used[ino] = true
	}
	for a, ino := range st.attIno {
		if !used[ino] {
			st.stale = append(st.stale, attName(a))
		}
	}
	for _, sp := range spares { // a spare still linked to an address is not spare
		if used[sp.ino] || sp.ino == 0 || len(st.spares) >= maxSpares {
			st.stale = append(st.stale, sp.name)
		} else {
			st.spares = append(st.spares, sp)
		}
	}
	return st, nil
}

// readlinkAt reads the target of symlink name in directory fd.
func readlinkAt(fd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// add files one directory entry.
func (st *dirState) add(name string, ino uint64, ipIno map[netip.Addr]uint64, inoAtt map[uint64]Attachment) {
	switch {
	case name == "." || name == ".." || name == lockName:
	case strings.HasPrefix(name, tmpPrefix):
		st.stale = append(st.stale, name)
	case strings.HasPrefix(name, lastPrefix):
		i := strings.LastIndexByte(name, '@')
		key := name[len(lastPrefix):max(i, len(lastPrefix))]
		ip, ok := addrName(name[i+1:])
		if _, dup := st.last[key]; !ok || dup || key == "" {
			st.stale = append(st.stale, name)
			return
		}
		st.last[key] = cursor{name: name, addr: ip}
	case strings.HasPrefix(name, attPrefix):
		cid, ifname, ok := strings.Cut(name[len(attPrefix):], "@")
		a := Attachment{ContainerID: cid, IfName: ifname}
		if ok && a.Validate() == nil {
			st.attIno[a] = ino
			inoAtt[ino] = a
		}
	default:
		if ip, ok := addrName(name); ok {
			ipIno[ip] = ino
		}
	}
}

// addrName parses a file name that is an address in canonical form.
func addrName(name string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(name)
	var buf [64]byte
	if err != nil || ip.Zone() != "" || string(ip.AppendTo(buf[:0])) != name {
		return netip.Addr{}, false
	}
	return ip, true
}
