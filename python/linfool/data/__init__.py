"""Images -> data sets: image trees and labels (sources), decoding as convert_imageset does (images),
the LMDB builder (lmdb_builder), the embedded synthetic set (synthetic) and `make data` (build).
Imports only linfool.core."""
