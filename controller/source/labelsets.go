package source

import (
	"sync"

	"github.com/weir-cni/weir/controller/snapshot"
)

// maxLabelSets bounds labelSets: past it the table starts over. Pods
// keep the sets they were given (sets are never modified); only new pods
// stop sharing with older ones until the table fills again. Label sets
// that stop being used (a Deployment's pod-template-hash after a rollout)
// thus cost at most the table.
const maxLabelSets = 1 << 16

// labelSets holds one copy of each distinct pod label set the caches
// hold: pods of one Deployment carry equal labels, and a map of a few
// labels costs ≈300 bytes a pod.
var labelSets = labelTable{sets: map[string]map[string]string{}}

type labelTable struct {
	mu   sync.Mutex
	sets map[string]map[string]string
}

// shared returns the table's map equal to l, adding l when there is none.
// The result must not be modified.
func (t *labelTable) shared(l map[string]string) map[string]string {
	if len(l) == 0 {
		return l
	}
	key := snapshot.LabelsKey(l)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.sets[key]; ok {
		return s
	}
	if len(t.sets) >= maxLabelSets {
		t.sets = map[string]map[string]string{}
	}
	t.sets[key] = l
	return l
}
