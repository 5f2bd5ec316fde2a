# The mesh PKI of the TLS targets, made with openssl at run time (nothing is committed):
# an ECDSA P-256 root and, per proxy, a P-256 leaf whose URI SAN is its SPIFFE id
# (spiffe://cluster.local/ns/bench/sa/<name>), with the DNS and IP SANs HAProxy and
# Envoy check. Keys are PKCS#8 (`BEGIN PRIVATE KEY`), as `skiff proxy --key-file` reads.
# shellcheck shell=bash

BENCH_TRUST_DOMAIN=cluster.local
BENCH_NAMESPACE=bench

# bench_spiffe_id NAME: the SPIFFE id of the bench workload NAME.
bench_spiffe_id() {
    printf 'spiffe://%s/ns/%s/sa/%s' "$BENCH_TRUST_DOMAIN" "$BENCH_NAMESPACE" "$1"
}

# make_root DIR: DIR/root-key.pem and DIR/root-cert.pem, valid for two days.
make_root() {
    local dir="$1"
    mkdir -p "$dir"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/root-key.pem" 2>/dev/null
    openssl req -x509 -new -sha256 -days 2 -key "$dir/root-key.pem" \
        -subj "/O=skiff bench/CN=skiff bench root" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/root-cert.pem"
}

# make_leaf DIR NAME IP: DIR/NAME-key.pem (PKCS#8), DIR/NAME-cert.pem (the leaf) and
# DIR/NAME.pem (leaf + key, HAProxy's `crt` file), signed by DIR's root. SANs: the
# SPIFFE id, NAME.bench and IP. Usable as server and as client certificate.
make_leaf() {
    local dir="$1" name="$2" ip="$3"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name-key.pem" 2>/dev/null
    openssl req -new -sha256 -key "$dir/$name-key.pem" -subj "/O=skiff bench/CN=$name" \
        -out "$dir/$name.csr"
    cat >"$dir/$name.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:$(bench_spiffe_id "$name"), DNS:$name.$BENCH_NAMESPACE, IP:$ip
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EXT
    openssl x509 -req -sha256 -days 1 -in "$dir/$name.csr" \
        -CA "$dir/root-cert.pem" -CAkey "$dir/root-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$dir/$name.ext" -out "$dir/$name-cert.pem" 2>/dev/null
    cat "$dir/$name-cert.pem" "$dir/$name-key.pem" >"$dir/$name.pem"
    openssl verify -CAfile "$dir/root-cert.pem" "$dir/$name-cert.pem" >/dev/null \
        || die "the generated certificate $dir/$name-cert.pem does not verify"
}

# make_bench_certs DIR: the root and the two leaves of the bench, `bench-client` (the
# client-side proxy, on CLIENT_ADDR) and `backend` (the server side, on SERVER_ADDR).
make_bench_certs() {
    local dir="$1"
    command -v openssl >/dev/null 2>&1 || die "openssl is needed for the TLS targets (apt-get install openssl)"
    make_root "$dir"
    make_leaf "$dir" bench-client "$CLIENT_ADDR"
    make_leaf "$dir" backend "$SERVER_ADDR"
}
