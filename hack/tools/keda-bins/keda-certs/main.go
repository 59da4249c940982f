// Command keda-certs issues the one certificate KEDA's operator and metrics server share in
// the dev cluster (hack/keda.py): signed by the cluster's CA, valid for both servers and as
// a client (their gRPC link is mutual TLS), with the given DNS names and IP addresses.
// It writes ca.crt (a copy of the CA), tls.crt and tls.key into -out, the file names KEDA
// reads from its --cert-dir. Standard library only, so nothing beyond Go is needed.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	caCert := flag.String("ca-cert", "", "the CA's certificate (PEM)")
	caKey := flag.String("ca-key", "", "the CA's private key (PEM: PKCS#1, SEC 1 or PKCS#8)")
	out := flag.String("out", "", "directory to write ca.crt, tls.crt and tls.key into")
	cn := flag.String("cn", "keda", "the certificate's common name")
	dns := flag.String("dns", "", "comma-separated DNS names")
	ips := flag.String("ip", "", "comma-separated IP addresses")
	days := flag.Int("days", 30, "validity in days")
	flag.Parse()
	if *caCert == "" || *caKey == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "keda-certs: -ca-cert, -ca-key and -out are required")
		os.Exit(2)
	}
	if err := issue(*caCert, *caKey, *out, *cn, split(*dns), split(*ips), *days); err != nil {
		fmt.Fprintln(os.Stderr, "keda-certs:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func issue(caCertPath, caKeyPath, out, cn string, dns, ips []string, days int) error {
	caPEM, err := os.ReadFile(caCertPath)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return fmt.Errorf("%s: no PEM certificate", caCertPath)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", caCertPath, err)
	}
	signer, err := readKey(caKeyPath)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"keda"}},
		NotBefore:    time.Now().Add(-time.Hour), // tolerate a little clock skew
		NotAfter:     time.Now().Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("-ip: %q is not an IP address", s)
		}
		template.IPAddresses = append(template.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, signer)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", caPEM, 0o644},
		{"tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{"tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(out, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#1, SEC 1 or PKCS#8 private key", path)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New(path + ": the key cannot sign")
	}
	return signer, nil
}
