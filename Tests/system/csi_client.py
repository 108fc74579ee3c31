#!/usr/bin/env python3
"""A CSI client over the plugin's unix socket, as kubelet and the sidecars call it.

  csi_client.py gen DIR                      generate the Python stubs of proto/csi.proto into DIR
  csi_client.py SOCKET METHOD [JSON]         one call; prints the answer as JSON

METHOD is Service.Method (Identity.Probe, Controller.CreateVolume, Node.NodeStageVolume)
and JSON the request in protobuf's JSON mapping. A failed call prints "CODE: message" on
stderr and exits 3, so a test can check the status code. Stubs come from $CSI_STUBS.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gen(out):
    from grpc_tools import protoc
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(out, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{ROOT}/proto", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", f"{ROOT}/proto/csi.proto"])
    if rc != 0:
        sys.exit(f"protoc failed: {rc}")


def call(socket, method, body):
    sys.path.insert(0, os.environ["CSI_STUBS"])
    import grpc
    from google.protobuf import json_format
    import csi_pb2
    import csi_pb2_grpc
    service, name = method.split(".")
    channel = grpc.insecure_channel(f"unix://{socket}")
    stub = getattr(csi_pb2_grpc, f"{service}Stub")(channel)
    rpc = getattr(stub, name)
    request_type = csi_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[name].input_type.name
    request = json_format.Parse(body or "{}", getattr(csi_pb2, request_type)())
    try:
        answer = rpc(request, timeout=float(os.environ.get("CSI_TIMEOUT", "120")))
    except grpc.RpcError as e:
        print(f"{e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(3)
    print(json_format.MessageToJson(answer, preserving_proto_field_name=True, indent=None, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        call(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "{}")
