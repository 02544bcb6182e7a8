#!/usr/bin/env bash
# Checks that another package can depend on DiTKit by version and use what README.md shows.
#
#   tools/check_consumer.sh [--build]
#
# Copies the working tree (without Tests/Fixtures) into a temporary git repository tagged 1.0.0,
# writes a consumer package that depends on it with `.package(url:, from: "1.0.0")` and whose
# main.swift is the README's Swift API example, and loads the package graph: SwiftPM rejects a
# versioned dependency whose targets use unsafe flags, and a product the consumer names must
# exist. With --build the consumer is also compiled (minutes: it builds DiTKit and swift-crypto
# from scratch), as `make consumer` does in CI. Dependencies resolve through SwiftPM's shared
# cache, so this works offline once the main package has been resolved.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build=0
[ "${1:-}" = "--build" ] && build=1
work="$(mktemp -d "${TMPDIR:-/tmp}/ditkit-consumer.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The working tree as it is (committed or not), as a tagged repository.
# A tree that is not a git checkout (CI runs in a plain copy) is copied without build products.
mkdir "$work/DiTKit"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^Tests/Fixtures/' | xargs -0 cp --parents -t "$work/DiTKit")
else
    (cd "$root" && find . \( -path ./.build -o -path ./.git -o -path ./.swiftpm -o -path ./Tests/Fixtures \) -prune \
        -o -type f -print0 | xargs -0 cp --parents -t "$work/DiTKit")
fi
git -C "$work/DiTKit" init -q
git -C "$work/DiTKit" add -A
git -C "$work/DiTKit" -c user.name=ditkit -c user.email=ditkit@localhost commit -q -m snapshot
git -C "$work/DiTKit" tag 1.0.0

# The consumer: the README example, verbatim.
mkdir -p "$work/Consumer/Sources/Consumer"
cat > "$work/Consumer/Package.swift" <<EOF
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Consumer",
    platforms: [.macOS(.v13)],
    dependencies: [.package(url: "file://$work/DiTKit", from: "1.0.0")],
    targets: [
        .executableTarget(name: "Consumer", dependencies: [
            .product(name: "DiTKitFormats", package: "DiTKit"),
            .product(name: "DiTKitModels", package: "DiTKit"),
        ]),
    ]
)
EOF
awk '/^## The Swift API/ { inside = 1 } inside && /^```swift$/ { code = 1; next } code && /^```$/ { exit } code { print }' \
    "$root/README.md" > "$work/Consumer/Sources/Consumer/main.swift"
if [ ! -s "$work/Consumer/Sources/Consumer/main.swift" ]; then
    echo "check_consumer: no Swift example under '## The Swift API' in README.md" >&2
    exit 1
fi

cd "$work/Consumer"
run() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; }
run swift package resolve
# Loading the graph fails on unsafe flags in a versioned dependency and on a missing product.
run swift package show-dependencies
if [ "$build" = 1 ]; then
    swift build --product Consumer
fi
echo "check_consumer: a package depending on DiTKit from: 1.0.0 $([ "$build" = 1 ] && echo builds || echo resolves) the README example"
