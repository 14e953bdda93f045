"""Audio building blocks shared by the audio families (WaveNet, Tacotron): mu-law companding,
WAV files, resampling, STFT and log-mel spectrograms."""
