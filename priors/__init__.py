"""Prior models of crystals given their space group: the CrystalFormer transformer."""
