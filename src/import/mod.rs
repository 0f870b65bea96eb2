//! Importers (SPEC §1): `npy` and `ibl_hf`.
