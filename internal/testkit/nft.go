package testkit

import (
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Nft runs nft with args inside the namespace n, with stdin as its input
// unless empty, and returns its output.
func Nft(t testing.TB, n *NS, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, "nft"}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v in %s: %v: %s", args, n.Name, err, out)
	}
	return string(out)
}

var wrapped = regexp.MustCompile(`,\n\t+ *`)

// NormalizeNft removes what nft genuinely reformats in a listing,
// and nothing else:
//  1. nft wraps long element lists over several lines: rejoin them;
//  2. the kernel dumps hash and pipapo set elements in its own order: sort
//     the elements of each list;
//  3. the kernel lists sets, maps and chains in creation order, which after
//     incremental changes is not name order: sort the blocks (sets and maps
//     by name, then chains by name) as String does.
func NormalizeNft(text string) string {
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
