"""Read a seed directory with cloud-init's own datasource code and print what it saw.

usage: read_seed.py nocloud|configdrive SEED_DIR GUEST_MAC
Prints one JSON object; exits non-zero (with a traceback) when cloud-init rejects the seed.
"""
import json
import sys

from cloudinit import sources, util
from cloudinit.net import network_state
from cloudinit.sources import DataSourceNoCloud
from cloudinit.sources.helpers import openstack

kind, seed, mac = sys.argv[1:4]
out = {}
if kind == "nocloud":
    # What DataSourceNoCloud does with a mounted cidata device.
    seeded = util.pathprefix2dict(
        seed,
        required=["user-data", "meta-data"],
        optional=["vendor-data", "network-config"],
    )
    data = DataSourceNoCloud._merge_new_seed(
        {"meta-data": {}, "user-data": b"", "vendor-data": b"", "network-config": None},
        seeded,
    )
    md = data["meta-data"]
    out["instance_id"] = md["instance-id"]
    out["local_hostname"] = md["local-hostname"]
    out["public_keys"] = sources.normalize_pubkey_data(md.get("public-keys"))
    out["userdata"] = util.decode_binary(data["user-data"])
    vd = data.get("vendor-data")
    out["vendordata"] = util.decode_binary(vd) if vd else None
    netcfg = data["network-config"]
else:
    # What DataSourceConfigDrive does with a mounted config-2 device.
    reader = openstack.ConfigDriveReader(seed)
    out["version"] = reader._find_working_version()
    r = reader.read_v2()
    md = r["metadata"]
    out["instance_id"] = md["instance-id"]
    out["local_hostname"] = md.get("local-hostname")
    out["public_keys"] = sources.normalize_pubkey_data(md.get("public_keys"))
    out["userdata"] = util.decode_binary(r["userdata"])
    out["vendordata"] = sources.convert_vendordata(r.get("vendordata"))
    out["availability_zone"] = md.get("availability_zone")
    out["launch_index"] = md.get("launch_index")
    netcfg = openstack.convert_net_json(r["networkdata"], known_macs={mac: "ens3"})

ns = network_state.parse_net_config_data(netcfg)
out["interfaces"] = [
    {
        "name": i.get("name"),
        "mac_address": i.get("mac_address"),
        "subnets": [s.get("type") for s in i.get("subnets", [])],
    }
    for i in ns.iter_interfaces()
]
# The user-data as cloud-init's cloud-config loader sees it.
cfg = util.load_yaml(out["userdata"])
out["cloud_config"] = {
    "hostname": cfg.get("hostname"),
    "fqdn": cfg.get("fqdn"),
    "ssh_authorized_keys": cfg.get("ssh_authorized_keys"),
    "ssh_keys": sorted(cfg.get("ssh_keys", {})),
}
json.dump(out, sys.stdout, indent=1, default=str)
