"""The style library: public-domain paintings shipped with nstdiff and the person's own, and words matched to them.

    from nstdiff.library import list_paintings, match
    best = match("Van Gogh starry swirls")[0]   # a Match: .painting (title, artist, path …), .score, .why
"""
from nstdiff.library.catalogue import (Painting, add_painting, get_painting, list_paintings, remove_painting,
                                       thumbnail)
from nstdiff.library.matching import Match, match, no_match_message

__all__ = ["Match", "Painting", "add_painting", "get_painting", "list_paintings", "match", "no_match_message",
           "remove_painting", "thumbnail"]
