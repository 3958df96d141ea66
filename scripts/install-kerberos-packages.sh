#!/usr/bin/env bash
# Called by the Makefile before the venv is built, so `make test` on a fresh machine sets up
# everything the README promises.
set -uo pipefail

# The Kerberos end-to-end tests (tests/e2e/test_kerberos.py) start an MIT KDC and need the
# headers gssapi and pykerberos build against: krb5-kdc (krb5kdc, kdb5_util), krb5-admin-server
# (kadmin.local), krb5-user (kinit), libkrb5-dev (krb5-config). Installed here with apt when
# possible; where they cannot be, those tests skip and say why.
install_kerberos_packages() {
    local packages=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev)
    if dpkg -s "${packages[@]}" >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo ".ci/run: no apt-get; ${packages[*]} not installed, the Kerberos tests will skip"
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo ".ci/run: not root; ${packages[*]} not installed, the Kerberos tests will skip"
            return 0
        fi
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    if ! "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
        "${apt[@]}" update -qq >/dev/null 2>&1 || true
        "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 \
            || echo ".ci/run: apt-get could not install ${packages[*]}; the Kerberos tests will skip"
    fi
}
install_kerberos_packages
