// Package ship sends an image from the Docker Engine that built it to a
// host's Engine, carrying only the layers the host lacks.
//
// Ship asks the destination which layer chains its images have (image
// list and inspect), streams `docker save` from the source, leaves out the
// layer.tar of every layer the destination already has, gzips the rest of
// the archive on the fly and feeds it to the destination's `docker load`.
// Nothing is spooled to disk and memory stays bounded. The loaded image's
// ID is checked against the source's before the image is tagged, so a
// half-sent or altered image is never tagged. A dropped connection during
// the load is retried, asking the destination again what it has.
//
// Partial archives work with the classic image store (graph drivers such
// as overlay2 or fuse-overlayfs), which looks a layer up by its chain ID
// before it reads the layer's file. The containerd image store imports
// every layer file named by the archive's manifest and refuses a partial
// archive, so for it Ship sends the whole image and says so in
// Stats.Full. See docs/ship.md.
//
// It is not for: building images (deployer/build), reaching the host
// (deployer/remote gives the destination's Engine client), registries, or
// deciding which image a service runs (the pipeline tags per release).
package ship
