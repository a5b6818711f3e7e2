"""ELF cores: validate and read them (reader), decode their notes (notes), write them (writer)."""
