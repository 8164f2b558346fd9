package kube

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPKI(dir, net.ParseIP("10.96.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.CAFile))

	serving := readCert(t, p.ServingCert)
	if err := serving.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("serving cert does not cover 127.0.0.1 (the relay relies on it): %v", err)
	}
	if err := serving.VerifyHostname("kubernetes.default.svc"); err != nil {
		t.Errorf("serving cert does not cover the in-cluster name: %v", err)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving cert does not chain to the CA: %v", err)
	}

	admin := readCert(t, p.AdminCert)
	if !slices.Contains(admin.Subject.Organization, "system:masters") {
		t.Errorf("admin cert groups = %v, want system:masters", admin.Subject.Organization)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin cert is not a client cert of the CA: %v", err)
	}
	for _, f := range []string{p.ServingKey, p.AdminKey, p.SAKey, p.SAPub} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
}

func TestFindBinariesNamesTheBuildScript(t *testing.T) {
	t.Setenv("WEIR_CACHE", t.TempDir())
	t.Setenv("WEIR_ETCD", "")
	t.Setenv("WEIR_KUBE_APISERVER", "")
	_, err := FindBinaries(t.Context(), false)
	if err == nil {
		t.Fatal("FindBinaries with an empty cache succeeded")
	}
	if !errors.Is(err, ErrNoBinaries) {
		t.Errorf("err = %v, want ErrNoBinaries", err)
	}
}
