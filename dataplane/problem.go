package dataplane

import (
	"fmt"

	"github.com/weir-cni/weir/ruleset"
)

// Problem is a part of a ruleset a backend could not express: the kernel
// holds the rest. Policy, Direction and Rule name the NetworkPolicy rule it
// belongs to; Policy is empty when it belongs to none (a chain of weir's
// own), and Direction and Rule mean nothing then.
type Problem struct {
	Policy    string // namespace/name
	Direction string // ingress or egress
	Rule      int    // the rule's index in the policy's list of that direction
	Message   string
}

// String prints the problem as one log line.
func (p Problem) String() string {
	if p.Policy == "" {
		return p.Message
	}
	return fmt.Sprintf("%s %s rule %d: %s", p.Policy, p.Direction, p.Rule, p.Message)
}

// RuleProblem is a problem with rule r: the message quotes r, and the
// problem names r's policy rule when r's owner is one.
func RuleProblem(r ruleset.Rule, message string) Problem {
	p := Problem{Message: fmt.Sprintf("rule %q: %s", r.String(), message)}
	if o := r.Owner; o.Kind == ruleset.OwnerPolicyRule {
		p.Policy, p.Direction, p.Rule = o.PolicyKey(), string(o.Direction), o.Rule
	}
	return p
}
