// Package snapshot turns cluster objects into the policy.Snapshot of one
// node. It holds what the agent and its sources share: the objects a source
// collects (Objects, Changes), the interfaces a source implements (Source,
// ChangeSource, PodGetter), and the conversion itself, in full (Build) or
// kept up to date from changes (View).
//
// It is pure: no I/O, no clock, no API server; the sources live in package
// source and the agent that runs them in package controller.
package snapshot
