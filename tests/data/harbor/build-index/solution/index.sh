build_index() { (cd "$1" && find . -name '*.md' -printf '%P\n' | LC_ALL=C sort > "$2"); }
