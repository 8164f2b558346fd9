// Package netnstest gives tests throwaway named network namespaces and runs
// nft inside them. It touches the kernel (ip netns add/del, nft) but never
// the caller's own namespace; it imports nothing of weir.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// New creates a named network namespace (so that `ip netns exec` can
// run nft inside it) and deletes it when the test ends.
func New(t testing.TB) (name, path string) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name = "weirt-nft-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name, filepath.Join("/var/run/netns", name)
}

// Nft runs nft with args inside namespace ns, with stdin as its input
// unless empty, and returns its output.
func Nft(t testing.TB, ns string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v in %s: %v: %s", args, ns, err, out)
	}
	return string(out)
}

var wrapped = regexp.MustCompile(`,\n\t+ *`)

// Normalize removes what nft genuinely reformats, and nothing else:
//  1. nft wraps long element lists over several lines: rejoin them;
//  2. the kernel dumps hash and pipapo set elements in its own order: sort
//     the elements of each list;
//  3. the kernel lists sets, maps and chains in creation order, which after
//     incremental changes is not name order: sort the blocks (sets and maps
//     by name, then chains by name) as String does.
func Normalize(text string) string {
	text = wrapped.ReplaceAllString(text, ", ")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i, l := range lines {
		start := strings.Index(l, "elements = { ")
		if start < 0 || !strings.HasSuffix(l, " }") {
			continue
		}
		body := l[start+len("elements = { ") : len(l)-2]
		elems := strings.Split(body, ", ")
		sort.Strings(elems)
		lines[i] = l[:start] + "elements = { " + strings.Join(elems, ", ") + " }"
	}
	var blocks []string
	var cur []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "table ") || l == "}" || l == "":
			continue
		case l == "\t}":
			cur = append(cur, l)
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		default:
			cur = append(cur, l)
		}
	}
	sort.Slice(blocks, func(i, j int) bool { return blockKey(blocks[i]) < blockKey(blocks[j]) })
	return strings.Join(blocks, "\n\n") + "\n"
}

func blockKey(b string) string {
	f := strings.Fields(strings.SplitN(b, "\n", 2)[0])
	if len(f) < 2 {
		return b
	}
	kind := "0"
	if f[0] == "chain" {
		kind = "1"
	}
	return kind + f[1]
}
