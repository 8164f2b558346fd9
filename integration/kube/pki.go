package kube

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the PEM files the API server and its clients use, all made at
// start with Go's crypto and kept in the cluster's directory.
type pki struct {
	CAFile, ServingCert, ServingKey string
	AdminCert, AdminKey             string
	SAPub, SAKey                    string

	caPEM, adminCertPEM, adminKeyPEM []byte
	ca                               *x509.Certificate
	caKey                            crypto.Signer
}

// newPKI writes a CA, a serving certificate for loopback and the in-cluster
// service names, an admin client certificate in group system:masters and a
// service-account signing key pair into dir.
func newPKI(dir string, serviceIP net.IP) (*pki, error) {
	p := &pki{}
	var err error
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "weir-test-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("sign ca: %w", err)
	}
	if p.ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, fmt.Errorf("parse ca: %w", err)
	}
	p.caKey = caKey
	p.caPEM = pemBlock("CERTIFICATE", caDER)

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, serviceIP},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	}
	servingCert, servingKey, err := p.issue(serving)
	if err != nil {
		return nil, fmt.Errorf("issue serving cert: %w", err)
	}
	p.adminCertPEM, p.adminKeyPEM, err = p.ClientCert("weir-admin", "system:masters")
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	saPriv, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}

	files := []struct {
		field *string
		name  string
		data  []byte
	}{
		{&p.CAFile, "ca.crt", p.caPEM},
		{&p.ServingCert, "apiserver.crt", servingCert},
		{&p.ServingKey, "apiserver.key", servingKey},
		{&p.AdminCert, "admin.crt", p.adminCertPEM},
		{&p.AdminKey, "admin.key", p.adminKeyPEM},
		{&p.SAPub, "sa.pub", pemBlock("PUBLIC KEY", saPub)},
		{&p.SAKey, "sa.key", pemBlock("EC PRIVATE KEY", saPriv)},
	}
	for _, f := range files {
		*f.field = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.field, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return p, nil
}

// ClientCert issues a client certificate (PEM cert, PEM key) for user in
// groups, signed by the cluster's CA: the API server authenticates it.
func (p *pki) ClientCert(user string, groups ...string) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = p.issue(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client cert for %s: %w", user, err)
	}
	return certPEM, keyPEM, nil
}

// issue signs tmpl with the CA for a fresh P-256 key.
func (p *pki) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := sign(tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER), nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(7 * 24 * time.Hour)
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
