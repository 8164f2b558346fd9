// Package nsgroup names a pod's Kubernetes namespace in the kernel without
// the agent: the plugin puts the host end of each pod's veth into the link
// group Of(namespace) at ADD (`ip link set ... group N`), and the ruleset
// matches that group (`iifgroup`, `oifgroup`) to give a pod the agent has
// not classified yet its namespace's default deny. It is pure, and the one
// definition both sides use.
package nsgroup

import "hash/fnv"

// Max is the largest group Of returns: groups stay in 31 bits so that `ip
// link`, which prints a group as a signed int, shows them as the positive
// numbers the ruleset lists.
const Max = 1<<31 - 1

// Of returns the link group of namespace ns: the FNV-1a hash of its name
// folded into 1..Max. 0, the kernel's default group (INIT_NETDEV_GROUP,
// "default" in iproute2's group file), is never a namespace's: a link left
// in it (a link of another plugin, the node's uplinks, a pod wired without
// a namespace) is never taken for a pod of some namespace. The empty
// namespace, unknown, is group 0.
//
// Two namespaces can share a group (about one pair in 2^31): the ruleset
// then denies the unclassified pods of both whenever either has an
// isolating policy, which only ever denies more.
func Of(ns string) uint32 {
	if ns == "" {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ns)) // never fails
	return h.Sum32()%Max + 1
}
