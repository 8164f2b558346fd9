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

// PKI holds the PEM files the API server and its clients use, all made at
// start with Go's crypto and kept in the cluster's directory.
type PKI struct {
	CAFile, ServingCert, ServingKey string
	AdminCert, AdminKey             string
	SAPub, SAKey                    string

	caPEM, adminCertPEM, adminKeyPEM []byte
	ca                               *x509.Certificate
	caKey                            crypto.Signer
}

// NewPKI writes a CA, a serving certificate for loopback, servingIPs and the
// in-cluster service names, an admin client certificate in group system:masters and a
// service-account signing key pair into dir.
func NewPKI(dir string, servingIPs ...net.IP) (*PKI, error) {
	p := &PKI{}
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
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, servingIPs...),
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
func (p *PKI) ClientCert(user string, groups ...string) (certPEM, keyPEM []byte, err error) {
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
func (p *PKI) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
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

// CAPEM returns the CA certificate in PEM.
func (p *PKI) CAPEM() []byte { return p.caPEM }

// AdminKubeconfig writes an admin (system:masters) kubeconfig for server.
func (p *PKI) AdminKubeconfig(path, server string) error {
	return WriteKubeconfig(path, server, p.caPEM, p.adminCertPEM, p.adminKeyPEM)
}

// UserKubeconfig writes a kubeconfig for server authenticating as user in
// groups with a fresh client certificate from the CA.
func (p *PKI) UserKubeconfig(path, server, user string, groups ...string) error {
	certPEM, keyPEM, err := p.ClientCert(user, groups...)
	if err != nil {
		return err
	}
	return WriteKubeconfig(path, server, p.caPEM, certPEM, keyPEM)
}

// ServingCertFiles issues a server certificate for ips and names, written to
// dir/name.crt and dir/name.key; it returns the two paths.
func (p *PKI) ServingCertFiles(dir, name string, ips []net.IP, names []string) (certFile, keyFile string, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames:    names,
	}
	certPEM, keyPEM, err := p.issue(tmpl)
	if err != nil {
		return "", "", fmt.Errorf("issue serving cert for %s: %w", name, err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", keyFile, err)
	}
	return certFile, keyFile, nil
}
