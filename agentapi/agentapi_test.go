package agentapi

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoAgent answers every request line with an empty response and records
// the lines' sizes.
func echoAgent(t *testing.T) (socket string, sizes func() []int) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var got []int
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			mu.Lock()
			got = append(got, len(line))
			mu.Unlock()
			_, _ = c.Write([]byte("{}\n"))
			c.Close()
		}
	}()
	return socket, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), got...)
	}
}

func TestCallSendsNoRequestTheAgentWouldRefuse(t *testing.T) {
	socket, sizes := echoAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	largest := Request{Op: OpPodAdded, Namespace: strings.Repeat("n", 63), Name: strings.Repeat("p", 253),
		ContainerID: strings.Repeat("c", 64), IPs: []string{"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}}
	if _, err := Call(ctx, socket, largest); err != nil {
		t.Fatalf("largest legitimate request: %v", err)
	}
	if got := sizes(); len(got) != 1 || got[0] > MaxRequestSize/4 {
		t.Errorf("largest legitimate request took %v bytes, want well under the limit %d", got, MaxRequestSize)
	}

	huge := largest
	huge.Name = strings.Repeat("p", MaxRequestSize)
	if _, err := Call(ctx, socket, huge); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("request over the limit: %v, want an error before sending", err)
	}
	if got := sizes(); len(got) != 1 {
		t.Errorf("agent saw requests of %v bytes, want only the legitimate one", got)
	}
}
