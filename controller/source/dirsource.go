package source

import (
	"context"
	"os"
	"time"

	"github.com/weir-cni/weir/controller/snapshot"
)

// DirSource reads cluster state from a directory of manifests and notices
// edits by polling file names, sizes and modification times.
type DirSource struct {
	Dir      string
	Interval time.Duration
}

// Objects reads every manifest in the directory.
func (d *DirSource) Objects() (snapshot.Objects, error) { return ReadManifests(d.Dir) }

// Run kicks once at start and again whenever the directory changes.
func (d *DirSource) Run(ctx context.Context, kick func()) error {
	interval := d.Interval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	last := d.fingerprint()
	kick()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if fp := d.fingerprint(); fp != last {
			last = fp
			kick()
		}
	}
}

// fingerprint summarises the manifest files' names, sizes and mtimes.
func (d *DirSource) fingerprint() string {
	files, err := manifestFiles(d.Dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b []byte
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		b = append(b, f...)
		b = append(b, st.ModTime().UTC().Format(time.RFC3339Nano)...)
		b = append(b, byte(st.Size()), byte(st.Size()>>8), byte(st.Size()>>16), '\n')
	}
	return string(b)
}
