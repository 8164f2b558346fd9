package nft

import (
	"encoding/binary"

	"github.com/google/nftables/userdata"
	"github.com/weir-cni/weir/ruleset"
	"golang.org/x/sys/unix"
)

// This file writes the `typeof` declaration of the shared sets. nft has no
// fixed-size data type for a plain 32-bit number, so a set whose key starts
// with a rule id is declared by the expressions of its key (`typeof numgen
// random mod 1 . ip saddr`), which nft keeps in the set's user data as
// nested TLVs (libnftnl udata) and reads back to print and parse the
// elements. google/nftables writes no such record, so the applier adds it
// to the encoded NEWSET message (patchTypeof, workarounds.go). The layout
// is nft's (src/expression.c, src/payload.c, src/meta.c, src/numgen.c):
// every number is a u32 in host byte order (nftnl_udata_put_u32), written
// by appendU32.

// nft's expression type ids and the record types of their udata.
const (
	udataTypeofExpr userdata.Type = 0 // the expression type of a typeof record
	udataTypeofData userdata.Type = 1 // its data

	exprTypePayload = 7  // EXPR_PAYLOAD
	exprTypeMeta    = 9  // EXPR_META
	exprTypeConcat  = 13 // EXPR_CONCAT
	exprTypeNumgen  = 23 // EXPR_NUMGEN

	protoDescTH  = 11 // PROTO_DESC_TH: transport header (th dport)
	protoDescIP  = 12 // PROTO_DESC_IP
	protoDescIP6 = 13 // PROTO_DESC_IP6

	ipHdrSaddr  = 11 // IPHDR_SADDR: index in nft's ip header template
	ip6HdrSaddr = 8  // IP6HDR_SADDR
	thHdrDport  = 2  // THDR_DPORT
)

// appendU32 appends a u32 record in host byte order, as nft does;
// userdata.AppendUint32 writes little-endian whatever the host.
func appendU32(b []byte, typ userdata.Type, v uint32) []byte {
	return userdata.Append(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// typeofExpr is the udata of the expression a key field is declared with
// (see Type.typeofString).
func typeofExpr(t ruleset.Type) []byte {
	var typ uint32
	var data []byte
	switch t {
	case ruleset.TypeID: // numgen random mod 1 (offset 0)
		typ = exprTypeNumgen
		data = appendU32(data, 0, unix.NFT_NG_RANDOM)
		data = appendU32(data, 1, 1)
		data = appendU32(data, 2, 0)
	case ruleset.TypeIPv4:
		typ = exprTypePayload
		data = appendU32(appendU32(data, 0, protoDescIP), 1, ipHdrSaddr)
	case ruleset.TypeIPv6:
		typ = exprTypePayload
		data = appendU32(appendU32(data, 0, protoDescIP6), 1, ip6HdrSaddr)
	case ruleset.TypeProto:
		typ = exprTypeMeta
		data = appendU32(data, 0, unix.NFT_META_L4PROTO)
	default: // th dport
		typ = exprTypePayload
		data = appendU32(appendU32(data, 0, protoDescTH), 1, thHdrDport)
	}
	return userdata.Append(appendU32(nil, udataTypeofExpr, typ), udataTypeofData, data)
}

// typeofUserdata is the user data nft writes for a set declared by typeof:
// key byte order (0: left to the typeof), the typeof record, the comment.
func typeofUserdata(s ruleset.Set) []byte {
	var concat []byte
	for i, t := range s.Key {
		concat = userdata.Append(concat, userdata.Type(i), typeofExpr(t))
	}
	key := userdata.Append(appendU32(nil, udataTypeofExpr, exprTypeConcat), udataTypeofData, concat)
	b := appendU32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, 0)
	b = userdata.Append(b, userdata.NFTNL_UDATA_SET_KEY_TYPEOF, key)
	if s.Comment != "" {
		b = userdata.AppendString(b, userdata.NFTNL_UDATA_SET_COMMENT, s.Comment)
	}
	return b
}
