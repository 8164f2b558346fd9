#!/bin/sh
# /agnhost of the e2e harness's agnhost image when the kernel has no SCTP
# (integration/cluster/images.go): it runs the real agnhost, kept at
# /usr/lib/agnhost/agnhost, with the same arguments and environment, in
# every case but one.
#
# `agnhost porter` serving only SCTP ports (SERVE_SCTP_PORT_* set and no
# other SERVE_* variable) dies with log.Fatal when the kernel cannot open
# an SCTP socket. Every pod of the network-policy-api conformance suite has
# two such containers and its hostNetwork pods two more: they would
# crash-loop, and the suite's Setup would never see its StatefulSets Ready.
# There is nothing such a porter could serve on this kernel, so it runs
# `agnhost pause` instead, and the upstream manifests stay as they are; the
# SCTP tests themselves are skipped, with the reason printed.
real=/usr/lib/agnhost/agnhost
if [ "$1" = porter ]; then
	sctp=0 other=0
	for v in $(env | sed -n 's/^\(SERVE_[^=]*\)=.*/\1/p'); do
		case $v in
		SERVE_SCTP_PORT_*) sctp=1 ;;
		*) other=1 ;;
		esac
	done
	if [ $sctp = 1 ] && [ $other = 0 ]; then
		exec "$real" pause
	fi
fi
exec "$real" "$@"
