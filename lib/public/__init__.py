"""The public path: the published snapshot's format and reader, one region's public figures, the page's
texts and the open-data endpoint. Reads the snapshot only, never the internal store."""
