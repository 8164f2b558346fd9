// Package synth generates clusters for weir's tests and benchmarks: the
// large synthetic cluster of the benchmarks (Cluster, and Objects for the
// same cluster as API objects) and the small random clusters and changes
// of the differential tests (Random). It builds policy.Snapshot values, so
// policy's own tests that use it are in package policy_test; the objects
// it is made of come from internal/fixtures.
package synth
