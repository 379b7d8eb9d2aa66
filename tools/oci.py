#!/usr/bin/env python3
"""Writes the built filter as an OCI image layout that Istio's WasmPlugin pulls.

Usage: tools/oci.py WASM OUT_DIR TAG

OUT_DIR is replaced by an OCI image layout (image-spec v1.1, "Image Layout"):

    OUT_DIR/oci-layout                   {"imageLayoutVersion": "1.0.0"}
    OUT_DIR/index.json                   one manifest, tagged TAG (org.opencontainers.image.ref.name)
    OUT_DIR/blobs/sha256/<hex>           the manifest, the runtime config and the module

The image is the "oci" variant of the Wasm image specification that Istio's
agent reads (istio/istio pkg/wasm/imagefetcher.go, extractOCIArtifactImage;
the format is solo-io/wasm spec/spec.md): exactly two layers,

  - application/vnd.module.wasm.config.v1+json   runtime-config.json: {"type": "envoy_proxy",
                                                 "abi_version": ..., "config": {"root_ids": [...]}}
  - application/vnd.module.wasm.content.layer.v1+wasm   the module itself, byte for byte,

and the runtime config is also the manifest's config. See docs/packaging.md for
why this variant (and not the "compat" tar.gz one, nor the CNCF
application/vnd.wasm.config.v0+json format, which Istio does not read).

Reproducible: no timestamps, JSON with sorted keys and fixed separators, so the
same .wasm always gives the same manifest digest (what WasmPlugin's `sha256`
and an `oci://...@sha256:` URL pin). Only the Python standard library is used.
"""

import hashlib
import json
import os
import shutil
import sys

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
TITLE = "org.opencontainers.image.title"
# The proxy-wasm ABI the filter exports (proxy_abi_version_0_2_1, from the
# proxy-wasm crate), and its root context's id (root_id in Envoy's config).
ABI_VERSION = "0.2.1"
ROOT_ID = "edge_auth"


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: tools/oci.py WASM OUT_DIR TAG")
    wasm_path, out, tag = argv[1], argv[2], argv[3]
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if wasm[:8] != b"\x00asm\x01\x00\x00\x00":
        sys.exit(f"oci: {wasm_path} is not a WebAssembly module")
    abi_export = "proxy_abi_version_" + ABI_VERSION.replace(".", "_")
    if abi_export.encode() not in wasm:
        sys.exit(f"oci: {wasm_path} does not export {abi_export}")

    if os.path.isdir(out):
        shutil.rmtree(out)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)

    def blob(data, media_type, annotations=None):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    runtime_config = canonical(
        {"type": "envoy_proxy", "abi_version": ABI_VERSION, "config": {"root_ids": [ROOT_ID]}}
    )
    config = blob(runtime_config, CONFIG_TYPE)
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config,
            "layers": [
                dict(config, annotations={TITLE: "runtime-config.json"}),
                blob(wasm, WASM_TYPE, {TITLE: "plugin.wasm"}),
            ],
            "annotations": {
                TITLE: "edge-auth",
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        }
    )
    manifest_desc = blob(manifest, MANIFEST_TYPE, {"org.opencontainers.image.ref.name": tag})
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest_desc]}))
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print(f"oci: {out} (tag {tag}, {len(wasm)} byte module)")
    print(f"oci: manifest {manifest_desc['digest']}")


if __name__ == "__main__":
    main(sys.argv)
