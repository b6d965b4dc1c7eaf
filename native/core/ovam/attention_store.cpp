#include "ovam/attention_store.h"
