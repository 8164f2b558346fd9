package image

import "testing"

func TestImportName(t *testing.T) {
	tests := []struct {
		name, ref, want string
	}{
		{"bare name gets docker.io/library and keeps its tag", "weir:dev", "docker.io/library/weir:dev"},
		{"bare name without tag gets latest", "weir", "docker.io/library/weir:latest"},
		{"docker hub user repository gets docker.io only", "someone/weir:1", "docker.io/someone/weir:1"},
		{"index.docker.io is spelled docker.io", "index.docker.io/library/weir:dev", "docker.io/library/weir:dev"},
		{"full docker.io name is unchanged", "docker.io/library/weir:dev", "docker.io/library/weir:dev"},
		{"other registry is unchanged", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"},
		{"other registry without tag gets latest", "registry.k8s.io/pause", "registry.k8s.io/pause:latest"},
		{"registry with port is a registry, not a tag", "localhost:5000/weir", "localhost:5000/weir:latest"},
		{"localhost is a registry", "localhost/weir:dev", "localhost/weir:dev"},
		{"unparsable reference is returned as is", "Weir:dev", "Weir:dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ImportName(tt.ref); got != tt.want {
				t.Errorf("ImportName(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestRepoTagIsTheFamiliarForm(t *testing.T) {
	tests := []struct {
		name, ref, want string
	}{
		{"official docker hub image drops docker.io/library", "docker.io/library/weir:dev", "weir:dev"},
		{"docker hub user image drops docker.io", "docker.io/someone/weir:1", "someone/weir:1"},
		{"missing tag becomes latest", "weir", "weir:latest"},
		{"other registry is kept", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := repoTag(tt.ref)
			if err != nil || got != tt.want {
				t.Errorf("repoTag(%q) = %q, %v; want %q", tt.ref, got, err, tt.want)
			}
			if ImportName(got) != ImportName(tt.ref) {
				t.Errorf("ImportName(%q) = %q, ImportName(%q) = %q; want equal", got, ImportName(got), tt.ref, ImportName(tt.ref))
			}
		})
	}
}
