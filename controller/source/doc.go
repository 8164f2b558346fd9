// Package source holds where the agent reads the cluster from. KubeSource
// follows the API server with shared informers for Pods, Namespaces,
// NetworkPolicies, Nodes and, while the API server serves them,
// ClusterNetworkPolicies, and reports what changed; DirSource reads a
// directory of manifests (ReadManifests) and polls it for edits.
//
// Both implement snapshot.Source and hand over snapshot.Objects; the agent
// (package controller) knows them only through those. KubeSource talks to
// the API server; DirSource reads files.
package source
