#pragma once

#include <QIcon>

namespace mla {

// The application icon, painted at every size it is asked for (sharp at any device pixel ratio): tall key and value
// columns narrowing into a short latent bar.
QIcon appIcon();

} // namespace mla
