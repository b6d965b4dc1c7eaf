// Stub: implemented by its owner (see the issue); exists so the build links.
#include "transformers/clip_tokenizer.h"
