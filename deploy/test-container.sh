#!/usr/bin/env bash
# `make test-container`: build deploy/Dockerfile with podman and smoke-test the image as the
# deploy README runs it, with a .env copied from .env.example and one volume for all state:
#   1. the API answers /healthz and a plan (examples/plan-request.json);
#   2. the daily `invoice-collector run --apply`, in a second container on the same volume,
#      twice: the first drafts, the second drafts nothing, both exit 0;
#   3. the invoices file moved to another path on the volume (a fresh copy, without the first
#      run's write-back): the run drafts nothing new;
# every container but the API's with a read-only root filesystem, so nothing writes into /app.
#
# No registry serves base images here: when the Dockerfile's FROM image is missing, it is made
# with debootstrap from the Debian mirror apt already uses, and `podman import`ed under that name.
# The host's CA bundle is handed to the build (a `ca` secret) so pip works through a
# TLS-intercepting proxy. Needs root (apt-get, debootstrap, rootful podman).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/invoice-collector:test}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TODAY=2026-11-24 # a Tuesday: the day examples/invoices.csv is written for (11 reminders due)
EXPECTED_DRAFTS=11
started=$SECONDS
say() { printf '[test-container %4ss] %s\n' $((SECONDS - started)) "$*"; }
fail() {
	printf '[test-container %4ss] FAIL: %s\n' $((SECONDS - started)) "$*" >&2
	exit 1
}

# --- Tools --------------------------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap curl; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
	[ "$(id -u)" = 0 ] || fail "install ${missing[*]} (as root: apt-get install ${missing[*]})"
	say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Podman's default ulimits are above what a process without CAP_SYS_RESOURCE may set (this
# machine's case); these are plenty for gunicorn and pip.
nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] || ((nofile > 4096)) && nofile=4096
[ "$nproc" = unlimited ] || ((nproc > 4096)) && nproc=4096
LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

work=$(mktemp -d /var/tmp/ic-test-container.XXXXXX)
tag=ic-smoke-$$
cleanup() {
	podman rm -f "$tag-api" >/dev/null 2>&1 || true
	podman volume rm -f "$tag" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# --- The base image -----------------------------------------------------------------------------
base=$(awk 'toupper($1) == "FROM" { print $2; exit }' deploy/Dockerfile)
if ! podman image exists "$base"; then
	suite=${base#*:}
	suite=${suite%%-*} # debian:bookworm-slim -> bookworm
	sources=/etc/apt/sources.list.d/debian.sources
	if [ -f "$sources" ]; then
		mirror=$(awk '$1 == "URIs:" { print $2; exit }' "$sources")
	else
		sources=/etc/apt/sources.list
		mirror=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' "$sources")
	fi
	[ -n "$mirror" ] || fail "no Debian mirror found in $sources"
	say "making $base: debootstrap --variant=minbase $suite from $mirror"
	rootfs=$work/rootfs
	debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{
			tail -20 "$work/debootstrap.log" >&2
			fail "debootstrap failed"
		}
	# The mirror (and its updates and security suites) the host's apt uses, as Debian's images do.
	if [ "$sources" = /etc/apt/sources.list.d/debian.sources ]; then
		rm -f "$rootfs/etc/apt/sources.list"
		cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
	fi
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "docker.io/library/$base" \
		>"$work/import.log" 2>&1 || {
		cat "$work/import.log" >&2
		fail "podman import failed"
	}
	rm -rf "$rootfs"
fi

# --- Build --------------------------------------------------------------------------------------
say "building $IMAGE from deploy/Dockerfile on $base"
build=(podman build --pull=never --format docker "${LIMITS[@]}" --ignorefile deploy/Dockerfile.dockerignore
	-f deploy/Dockerfile -t "$IMAGE")
[ -s "$CA_BUNDLE" ] && build+=(--secret "id=ca,src=$CA_BUNDLE")
"${build[@]}" . >"$work/build.log" 2>&1 || {
	tail -30 "$work/build.log" >&2
	fail "podman build failed"
}
say "built"

# --- The .env an operator copies from .env.example ----------------------------------------------
key=smoke-$RANDOM$RANDOM$RANDOM
cp .env.example "$work/.env"
# Filled in as the example asks: an API key; the whole day as the window, since this runs at
# any hour (the real window is WINDOW_START–WINDOW_END in the sheet's zone).
sed -i -e "s/^API_KEYS=.*/API_KEYS=$key/" -e 's/^WINDOW_START=.*/WINDOW_START=0/' \
	-e 's/^WINDOW_END=.*/WINDOW_END=24/' "$work/.env"
grep -q "^API_KEYS=$key$" "$work/.env" || fail ".env.example has no API_KEYS= line to fill"

podman volume create "$tag" >/dev/null
in_volume() { # a throwaway container on the volume, as the image's user
	podman run --rm --pull=never --no-healthcheck "${LIMITS[@]}" -v "$tag:/data" --entrypoint sh "$IMAGE" -c "$1"
}
daily_run() { # the daily run as the deploy README gives it; extra arguments go to `docker run`
	podman run --rm --pull=never --no-healthcheck "${LIMITS[@]}" --read-only --env-file "$work/.env" \
		-v "$tag:/data" "$@" "$IMAGE" invoice-collector run --apply --today "$TODAY"
}
drafts_on_volume() { in_volume 'find /data/Maildir -type f 2>/dev/null | grep -c . || true'; }
# The operator's invoices file, on the volume where INVOICES_FILE (unset in the .env) points.
in_volume 'cp /app/examples/invoices.csv /data/invoices.csv'

# --- 1. The API ---------------------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman run -d --pull=never --no-healthcheck --name "$tag-api" "${LIMITS[@]}" --read-only --env-file "$work/.env" \
	-v "$tag:/data" -p "127.0.0.1:$port:8000" "$IMAGE" >/dev/null
for _ in $(seq 60); do
	curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >"$work/healthz" 2>/dev/null && break
	sleep 1
done
grep -q '"status": *"ok"' "$work/healthz" 2>/dev/null || {
	podman logs "$tag-api" 2>&1 | tail -20 >&2
	fail "the API did not answer /healthz within 60 s"
}
say "API: /healthz ok"
curl -fsS -m 30 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
	--data-binary @examples/plan-request.json "http://127.0.0.1:$port/v1/plan" >"$work/plan.json" ||
	fail "POST /v1/plan failed"
planned=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"]["draft"])' "$work/plan.json")
[ "$planned" = "$EXPECTED_DRAFTS" ] || fail "the plan has $planned drafts, expected $EXPECTED_DRAFTS"
say "API: /v1/plan ok ($planned to draft)"

# --- 2. The daily run, twice, on the same volume ------------------------------------------------
run_and_check() { # label, expected new drafts, extra `docker run` arguments...
	local label=$1 expected=$2 before after rc=0
	shift 2
	before=$(drafts_on_volume)
	daily_run "$@" >"$work/run.out" 2>"$work/run.err" || rc=$?
	after=$(drafts_on_volume)
	if [ "$rc" != 0 ] || [ $((after - before)) != "$expected" ]; then
		cat "$work/run.out" "$work/run.err" >&2
		fail "$label: exit $rc and $((after - before)) new drafts; expected exit 0 and $expected"
	fi
	say "$label: exit 0, $((after - before)) new drafts ($(grep -o '· [0-9]* drafted, [^.]*' "$work/run.out" | tail -1))"
}
run_and_check "daily run 1" "$EXPECTED_DRAFTS"
run_and_check "daily run 2" 0

# --- 3. The invoices file moved: a fresh copy elsewhere on the volume -------------------------
in_volume 'mkdir -p /data/moved && cp /app/examples/invoices.csv /data/moved/invoices.csv'
run_and_check "moved file" 0 -e INVOICES_FILE=/data/moved/invoices.csv

# Everything the runs kept is on the volume.
in_volume 'test -s /data/ledger.db && test -s /data/sends.csv && test -d /data/Maildir &&
	grep -q "^INV-1001,.*,7," /data/invoices.csv' ||
	fail "the ledger, sends.csv, the Maildir or the written-back invoices file is not on /data"
say "state on /data: $(in_volume 'cd /data && ls | tr "\n" " "')"
say "PASS in $((SECONDS - started)) s"
