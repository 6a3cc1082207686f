"""Controls shared by the classic methods: colour preservation and region masks (Gatys et al. 2017)."""
