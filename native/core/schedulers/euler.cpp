// Stub: implemented by its owner; exists so the build links.
#include "schedulers/scheduler.h"
