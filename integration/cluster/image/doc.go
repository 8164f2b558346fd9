// Package image writes container images as docker-archive tarballs, the
// format `docker load` and `ctr images import` accept, built from local files
// only: no registry, no daemon, no network. It touches only the files it is
// told to read and the archive it writes; it neither touches the kernel nor
// talks to the API server.
package image
