"""Build, package and deploy the SAM stack (template.yaml) to AWS or LocalStack."""

from aob.deploy._artifacts import Artifact, build_function_zip, build_layer_zip
from aob.deploy._signer import PolicySigner
from aob.deploy._stack import DeployResult, deploy_stack
from aob.deploy._template import load_template, package_template

__all__ = [
    "Artifact",
    "DeployResult",
    "PolicySigner",
    "build_function_zip",
    "build_layer_zip",
    "deploy_stack",
    "load_template",
    "package_template",
]
