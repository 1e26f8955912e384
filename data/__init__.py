from data.versions import require_transformers

# Before anything imports transformers' 5.x-only API: an older release stops here with one line, exit 2.
require_transformers()
