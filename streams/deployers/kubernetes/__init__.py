"""The Kubernetes deployer: `manifests` turns a release into objects, `deployer` applies and reads them."""
