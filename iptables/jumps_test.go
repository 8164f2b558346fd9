package iptables

import (
	"errors"
	"reflect"
	"testing"
)

func TestMisplacedJumps(t *testing.T) {
	applied := map[string]map[string]string{
		"filter": {"WEIR-INPUT": "", "WEIR-FORWARD": "", "WEIR-OUTPUT": "", "WEIR-x": ""},
		"nat":    {"WEIR-POSTROUTING": ""},
	}
	in := jump{builtin: "INPUT", target: "WEIR-INPUT"}
	fwd := jump{builtin: "FORWARD", target: "WEIR-FORWARD"}
	post := jump{builtin: "POSTROUTING", target: "WEIR-POSTROUTING"}
	out := jump{builtin: "OUTPUT", target: "WEIR-OUTPUT"}
	cases := []struct {
		name   string
		chains map[string][]string // "table chain" -> iptables -S
		want   map[string]edits
	}{
		{"jumps first: nothing to do", map[string][]string{
			"filter INPUT":    {"-P INPUT ACCEPT", "-A INPUT -j WEIR-INPUT", "-A INPUT -j KUBE-FIREWALL"},
			"filter FORWARD":  {"-P FORWARD ACCEPT", "-A FORWARD -j WEIR-FORWARD", "-A FORWARD -j KUBE-FORWARD"},
			"filter OUTPUT":   {"-P OUTPUT ACCEPT", "-A OUTPUT -j WEIR-OUTPUT"},
			"nat POSTROUTING": {"-P POSTROUTING ACCEPT", "-A POSTROUTING -j WEIR-POSTROUTING"},
		}, map[string]edits{}},
		{"rule prepended above the jump: jump moves back", map[string][]string{
			"filter INPUT":    {"-P INPUT ACCEPT", "-A INPUT -j KUBE-FIREWALL", "-A INPUT -j WEIR-INPUT"},
			"filter FORWARD":  {"-P FORWARD ACCEPT", "-A FORWARD -j KUBE-FORWARD", "-A FORWARD -j WEIR-FORWARD"},
			"filter OUTPUT":   {"-P OUTPUT ACCEPT", "-A OUTPUT -j WEIR-OUTPUT"},
			"nat POSTROUTING": {"-P POSTROUTING ACCEPT", "-A POSTROUTING -j KUBE-POSTROUTING", "-A POSTROUTING -j WEIR-POSTROUTING"},
		}, map[string]edits{
			"filter": {delJump: []jump{in, fwd}, addJump: []jump{in, fwd}},
			"nat":    {delJump: []jump{post}, addJump: []jump{post}},
		}},
		{"deleted jump is inserted again", map[string][]string{
			"filter INPUT":    {"-P INPUT ACCEPT", "-A INPUT -j WEIR-INPUT"},
			"filter FORWARD":  {"-P FORWARD ACCEPT", "-A FORWARD -j WEIR-FORWARD"},
			"filter OUTPUT":   {"-P OUTPUT ACCEPT"},
			"nat POSTROUTING": {"-P POSTROUTING ACCEPT", "-A POSTROUTING -j WEIR-POSTROUTING"},
		}, map[string]edits{
			"filter": {addJump: []jump{out}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var listed []string
			list := func(table, chain string) ([]string, error) {
				listed = append(listed, table+" "+chain)
				rules, ok := tc.chains[table+" "+chain]
				if !ok {
					return nil, errors.New("unexpected list")
				}
				return rules, nil
			}
			got, err := misplacedJumps(list, applied)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("edits %+v, want %+v", got, tc.want)
			}
			// Only the built-in chains weir hooks are read.
			if want := []string{"filter INPUT", "filter FORWARD", "filter OUTPUT", "nat POSTROUTING"}; !reflect.DeepEqual(listed, want) {
				t.Errorf("listed %v, want %v", listed, want)
			}
		})
	}
}
